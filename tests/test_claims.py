"""The claims' verdicts on the committed figure records: saved in each record, the same as evaluating the claim now,
shown on the figures page and counted in the README; and claim tests that can fail."""
import copy, json, re
from pathlib import Path
import pytest
from modmem.claims import CLAIMS, VERDICTS, evaluate, claims_of, claims_table, counts, counts_text
from modmem.manifest import MANIFEST

ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / 'figures'


def _records():
    for preset in ('full', 'quick'):
        for f in sorted((FIG / preset).glob('p*.json')):
            rec = json.loads(f.read_text())
            if (FIG / preset / rec.get('file', '')).is_file(): yield preset, rec


def test_every_figure_has_a_claim_with_a_margin():
    for e in MANIFEST: assert claims_of(e.id), e.id
    for c in CLAIMS:
        assert c.text and c.quantity and c.rule.text, c
        assert c.scale in ('any', 'paper'), c


def test_committed_records_carry_todays_verdicts():
    "Each committed record holds its claims' verdicts, and they are what the claims give on its numbers now."
    n = 0
    for preset, rec in _records():
        assert 'claims' in rec, f'{preset}/{rec["id"]} has no claims: regenerate it'
        now = evaluate(rec)
        assert [(c['id'], c['verdict'], c['measured']) for c in rec['claims']] == \
               [(c['id'], c['verdict'], c['measured']) for c in now], f'{preset}/{rec["id"]}'
        assert all(c['verdict'] in VERDICTS for c in now)
        n += len(now)
    assert n >= len(MANIFEST)


def test_figures_page_shows_the_verdicts():
    "Every claim row of the figures page names the verdict the record holds, at each preset."
    page = (ROOT / 'nbs' / 'figures.qmd').read_text()
    for preset, rec in _records():
        sec = page.split(f'{{#{rec["id"]}}}', 1)[1].split('\n### ', 1)[0]
        cells = lambda l: [c.strip() for c in re.split(r'(?<!\\)\|', l.strip().strip('|'))]   # a cell may hold an escaped \|
        head = next(l for l in sec.splitlines() if l.startswith('| claim ('))
        col = cells(head).index(f'`{preset}`')
        rows = [l for l in sec.splitlines() if l.startswith('| ') and not l.startswith('| claim (') and ' **' in l
                and len(cells(l)) == len(cells(head))]
        verdicts = [re.match(r'\*\*([a-z ]+)\*\*', cells(r)[col]).group(1) for r in rows]
        assert verdicts == [c['verdict'] for c in rec['claims']], (preset, rec['id'], verdicts)


def test_readme_counts_are_the_records():
    readme = (ROOT / 'README.md').read_text()
    for preset in ('full', 'quick'):
        t = claims_table(FIG, preset)
        if len(t): assert f'{preset}: {counts_text(counts(t.verdict))}' in readme, preset


def _rec(id, metrics): return dict(id=id, metrics=metrics)


@pytest.mark.parametrize('id,good,bad,k', [
    ('p1-fig03a', {'inversion_share': {'0': 0.0, '15': 0.6}}, {'inversion_share': {'0': 0.6, '15': 0.0}}, 0),
    ('p2-fig01', {'test_acc': {'ξ=0.8': {'9': 0.01, '65': 0.2, '257': 0.5}}}, {'test_acc': {'ξ=0.8': {'9': 0.5, '65': 0.2, '257': 0.01}}}, 0),
    ('p2-table3', {'before filtration': {'test': 0.768}, 'after filtration': {'test': 0.878}},
     {'before filtration': {'test': 0.878}, 'after filtration': {'test': 0.768}}, 0),
    ('p1-fig32', {str(w): dict(needed_mean=60 * (w / 500) ** 0.2) for w in (500, 1100, 2070)},
     {str(w): dict(needed_mean=(w / 4) ** 1.2) for w in (500, 1100, 2070)}, 0),
    ('p2-fig04', {'lead': [dict(run='AdamW, M=65', lead_points=30, n_points=33)]}, {'lead': [dict(run='AdamW, M=65', lead_points=2, n_points=33)]}, 0),
])
def test_a_reversed_effect_fails(id, good, bad, k):
    assert evaluate(_rec(id, good))[k]['verdict'] == 'holds'
    assert evaluate(_rec(id, bad))[k]['verdict'] == 'fails'
    assert evaluate(_rec(id, {}))[k]['verdict'] == 'not measurable'
