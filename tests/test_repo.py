"The repository stays consistent: README from index.ipynb, modmem/ from nbs/."
import filecmp, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_current():
    sys.path.insert(0, str(ROOT / 'tools'))
    from make_readme import render
    assert render(ROOT / 'nbs' / 'index.ipynb') == (ROOT / 'README.md').read_text(), \
        'README.md is stale: run `python tools/make_readme.py`'


def test_lessons_are_folded():
    "The long lessons fold their helpers' API entries and hand-made examples as tools/fold_api.py's FOLDS says."
    sys.path.insert(0, str(ROOT / 'tools'))
    from fold_api import main
    assert main(['--check']) == 0, 'a lesson is not folded as FOLDS says: run `python tools/fold_api.py`, then nbdev_clean'


def test_package_matches_notebooks(tmp_path):
    "nbdev_export of a copy of nbs/ reproduces modmem/ byte for byte."
    for name in ('settings.ini', 'setup.py', 'README.md', 'pyproject.toml'):
        if (ROOT / name).exists(): shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / 'nbs', tmp_path / 'nbs')
    shutil.copytree(ROOT / 'modmem', tmp_path / 'modmem', ignore=shutil.ignore_patterns('__pycache__'))
    exe = Path(sys.executable).parent / 'nbdev_export'
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    cmp = filecmp.dircmp(ROOT / 'modmem', tmp_path / 'modmem', ignore=['__pycache__'])
    assert not cmp.diff_files and not cmp.right_only, \
        f'modmem/ is out of sync with nbs/ ({cmp.diff_files + cmp.right_only}): run nbdev_export'


def test_no_cell_mixes_imports_with_code():
    "nbdev_docs executes every non-exported cell that holds an import (slow ones too): imports get cells of their own."
    import ast, json
    shown = ('export', 'exporti', 'exports', 'exec_doc')
    bad = []
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            src = ''.join(c['source'])
            if c['cell_type'] != 'code' or 'nbdev_export' + '()' in src: continue
            lines = src.split('\n')
            directives = [l.replace(' ', '') for l in lines if l.startswith('#|')]
            if any(d.startswith('#|' + s) for d in directives for s in shown) or '#|eval:false' in directives: continue
            try: tree = ast.parse('\n'.join(l for l in lines if not l.startswith(('%', '!'))))
            except SyntaxError: continue
            nodes = list(ast.walk(tree))
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes) and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes):
                bad.append(f'{nb.name}[{i}]')
    assert not bad, f'cells that mix imports with other code (move the imports to a cell of their own): {bad}'
