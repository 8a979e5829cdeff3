"The architecture holds in the code: no import cycle, no import from a higher layer or a later lesson, lesson-sized modules and cells."
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {'engine': ('00', '01', '02'), 'analysis': ('03', '04', '05', '06'), 'top': ('07', '08', '09', '90')}
MAX_MODULE_LINES, MAX_CELL_LINES, MAX_SUMMARY = 420, 40, 100


def layer(notebook: str) -> int:
    "0 engine, 1 analysis, 2 recipes / experiments / reproduce / explorers / CLI: read from the notebook's number."
    return next(i for i, prefixes in enumerate(LAYERS.values()) if notebook[:2] in prefixes)


def modules() -> dict:
    "module → (its notebook, the modmem modules it imports anywhere, inside functions too)."
    out = {}
    for f in sorted((ROOT / 'modmem').glob('*.py')):
        if f.stem.startswith('_'): continue
        src = f.read_text()
        nb = re.search(r'File to edit: \.\./nbs/(\S+)\.ipynb', src)
        deps = set()
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, ast.ImportFrom) and n.level == 1: deps |= {n.module.split('.')[0]} if n.module else {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and (n.module or '').startswith('modmem.'): deps.add(n.module.split('.')[1])
            elif isinstance(n, ast.Import): deps |= {a.name.split('.')[1] for a in n.names if a.name.startswith('modmem.')}
        out[f.stem] = (nb.group(1) if nb else None, deps - {f.stem})
    return out


def cycles(graph: dict) -> list:
    "Every module that lies on an import cycle, with the cycle found from it."
    found = []
    def walk(m, path):
        for d in sorted(graph.get(m, ())):
            if d == path[0]: found.append(path + [d])
            elif d not in path and len(path) < len(graph): walk(d, path + [d])
    for m in graph: walk(m, [m])
    return found


def test_every_module_comes_from_a_lesson():
    assert not [m for m, (nb, _) in modules().items() if nb is None]


def test_no_import_cycle():
    graph = {m: {d for d in deps} for m, (_, deps) in modules().items()}
    assert not cycles(graph), f"import cycles: {cycles(graph)[:5]}"


def test_no_import_from_a_higher_layer_or_a_later_lesson():
    mods = modules()
    bad = [(m, d) for m, (nb, deps) in mods.items() for d in deps
           if d in mods and (layer(mods[d][0]) > layer(nb) or mods[d][0] > nb)]
    assert not bad, f"imports from a higher layer or a later notebook: {bad}"


def test_the_rules_catch_a_cycle_and_an_upward_import():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) and not cycles({'a': {'b'}, 'b': set()})
    assert layer('07e_experiments') > layer('03_fourier') > layer('02d_training')


def test_modules_are_lesson_sized():
    big = {f.name: n for f in (ROOT / 'modmem').glob('*.py') if not f.stem.startswith('_')
           and (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def _notebooks():
    return sorted((ROOT / 'nbs').glob('*.ipynb')) + sorted((ROOT / 'experiments').glob('*.ipynb'))


def test_no_code_cell_over_40_lines():
    big = [(nb.name, c.get('id'), n) for nb in _notebooks() for c in json.loads(nb.read_text())['cells']
           if c['cell_type'] == 'code' and (n := len(''.join(c['source']).strip().splitlines())) > MAX_CELL_LINES]
    assert not big, f"code cells over {MAX_CELL_LINES} lines: {big}"


def summary(nb: Path) -> str | None:
    "The lesson's one-line `>` summary under its H1."
    for c in json.loads(nb.read_text())['cells']:
        if c['cell_type'] == 'markdown' and ''.join(c['source']).lstrip().startswith('# '):
            return next((l[1:].strip() for l in ''.join(c['source']).splitlines() if l.startswith('>')), None)


def test_every_lesson_has_a_short_summary():
    bad = {nb.name: s for nb in sorted((ROOT / 'nbs').glob('*.ipynb')) if not (s := summary(nb)) or len(s) > MAX_SUMMARY}
    assert not bad, f"lessons without a `>` summary of at most {MAX_SUMMARY} characters: {bad}"


AXES_ONLY = re.compile(r'(test_eq\(\s*len\(\s*\w+\.(get_)?axes|assert\s+len\(\s*\w+\.(get_)?axes)')
CHECKS = re.compile(r'^\s*(test_\w+\(|assert\b)', re.M)


def test_no_test_checks_only_the_number_of_axes():
    "A plot's test reads what is drawn (line data, labels, colours), not only how many panels there are."
    bad = [(nb.name, c.get('id')) for nb in _notebooks() for c in json.loads(nb.read_text())['cells']
           if c['cell_type'] == 'code' and AXES_ONLY.search(src := ''.join(c['source'])) and len(CHECKS.findall(src)) < 2]
    assert not bad, f"cells whose only check is the number of axes: {bad}"


def test_no_test_function_checks_only_the_number_of_axes():
    bad = []
    for f in sorted((ROOT / 'tests').glob('test_*.py')):
        for fn in ast.walk(ast.parse(f.read_text())):
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith('test_')): continue
            checks = [ast.unparse(n) for n in ast.walk(fn) if isinstance(n, ast.Assert)
                      or (isinstance(n, ast.Call) and getattr(n.func, 'id', '').startswith('test_'))]
            if checks and all(re.search(r'len\(\s*[\w.]*axes', c) for c in checks): bad.append((f.name, fn.name))
    assert not bad, f"test functions whose only check is the number of axes: {bad}"


MIN_FONT_PT = 8   # lesson figures are shown at 100 px per inch (saved at 2×, drawn at half): 8 pt ≈ 11 px
SMALL_FONT = re.compile(r"fontsize\s*=\s*(\d+(?:\.\d+)?)|(?:font)?size\s*=\s*'(xx-small|x-small)'")


def test_no_text_in_a_figure_below_8_points():
    "Every label, title and legend a lesson or experiment draws is at least 8 pt, so it reads at ≥ 10 px on the site."
    bad = []
    for nb in _notebooks():
        for c in json.loads(nb.read_text())['cells']:
            if c['cell_type'] != 'code': continue
            for m in SMALL_FONT.finditer(''.join(c['source'])):
                if m[2] or float(m[1]) < MIN_FONT_PT: bad.append((nb.name, c.get('id'), m[0]))
    assert not bad, f"text below {MIN_FONT_PT} pt: {bad}"


def test_the_font_rule_catches_small_text():
    assert SMALL_FONT.search("ax.legend(fontsize=7)")[1] == '7' and SMALL_FONT.search("size='x-small'")[2] == 'x-small'
