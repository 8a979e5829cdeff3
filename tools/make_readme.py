"""Regenerate README.md from nbs/index.ipynb without Quarto (`--check`: fail if README.md is stale).

This is README.md's only generator: settings.ini's `readme_nb` names README.md itself, so nbdev_docs and nbdev_prepare
do not re-render README.md through Quarto (tests/test_docs.py checks that; tests/test_repo.py that README.md is current)."""
import configparser, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'


def _directives(src):
    return [l for l in src.splitlines() if re.match(r'^\s*#\s*\|', l)]


def _text_outputs(cell):
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o['text']))
        elif 'text/plain' in o.get('data', {}) and 'image/png' not in o['data']: out.append(''.join(o['data']['text/plain']))
    return ''.join(x if x.endswith('\n') else x + '\n' for x in out)


def _site_url() -> str:
    "The docs site's address from settings.ini (doc_host + doc_baseurl)."
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    d = cfg['DEFAULT'] if 'DEFAULT' in cfg else {}
    return d.get('doc_host', '').rstrip('/') + '/' + d.get('doc_baseurl', '').strip('/')


def relink(md: str) -> str:
    """Links between docs pages, written for Quarto (`[Training](02_training.ipynb)`, relative to nbs/), made to work
    from the repository root on GitHub: a notebook -> nbs/<notebook>, which GitHub renders; a Quarto page (.qmd) -> its
    page on the docs site, since GitHub shows .qmd files as plain text; an image figimg/<preset>/<id>.png -> figures/..."""
    def fix(m):
        text, target, anchor = m.group(1), m.group(2), m.group(3) or ''
        if re.match(r'^[a-z]+:|^/|^#', target): return m.group(0)
        if target.endswith('.ipynb'): return f'[{text}](nbs/{target}{anchor})'
        return f'[{text}]({_site_url()}/{target[:-len(".qmd")]}.html{anchor})'
    md = re.sub(r'\[([^\]]*)\]\(([^)\s#]+\.(?:ipynb|qmd))(#[^)\s]*)?\)', fix, md)
    # images of the committed figures: the site shows them from figimg/<preset>/ (copied there at render time by
    # tools/make_figures_page.py), the repository holds them in figures/<preset>/
    return re.sub(r'\]\(figimg/([^)\s]+\.png)\)', r'](figures/\1)', md)


def unfold(md: str) -> str:
    """Markdown without the site's collapsed callouts (`::: {.callout-note collapse=...}` ... its `:::`), their content kept:
    GitHub prints fences as text. Other fenced divs keep both their fences; code blocks are left alone."""
    out, divs, code = [], [], False
    for line in md.split('\n'):
        if line.startswith('```'): code = not code
        elif not code and re.match(r'^:::+ *\S', line):
            divs.append(bool(re.match(r'^:::+ *\{\.callout', line)))
            if divs[-1]: continue
        elif not code and re.match(r'^:::+ *$', line) and divs:
            if divs.pop():
                while out and not out[-1]: out.pop()   # the blank line that separated the content from its fence
                continue
        out.append(line)
    return '\n'.join(out)


def render(nb_path) -> str:
    "README text for a notebook: markdown as is (the site's folds unfolded), code cells as python blocks with their text outputs."
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in nb['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': parts.append(relink(src.strip()) + '\n')
        elif cell['cell_type'] == 'code':
            flags = ' '.join(_directives(src))
            if re.search(r'\bhide\b|\bexport\b', flags): continue
            code = '\n'.join(l for l in src.splitlines() if not re.match(r'^\s*#\s*\|', l)).strip()
            if code: parts.append(f'```python\n{code}\n```\n')
            out = _text_outputs(cell)
            if out: parts.append(f'```\n{out}```\n')
    return HEADER + unfold('\n'.join(parts)).rstrip('\n') + '\n'


if __name__ == '__main__':
    text = render(ROOT / 'nbs' / 'index.ipynb')
    readme = ROOT / 'README.md'
    if '--check' in sys.argv[1:]:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is stale: run `python tools/make_readme.py`')
        print('README.md is current')
    else:
        readme.write_text(text); print(f'wrote {readme}')
