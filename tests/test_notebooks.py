"Run every notebook under nbs/ with nbdev's own runner (the `#|` directives apply)."
import os
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as _run_nb

cfg = get_config()
_skip = lambda p: any(x.startswith(('_', '.')) for x in p.relative_to(cfg.nbs_path).parts) or (p.parent / '.notest').exists()
NBS = sorted(p for p in cfg.nbs_path.rglob('*.ipynb') if not _skip(p))
# `pytest` runs the slow cells too (the paper-scale checks, a few minutes on 2 cores); MODMEM_FAST=1 skips them.
FLAGS = [] if os.environ.get('MODMEM_FAST') else ['slow']


@pytest.mark.parametrize('nb', NBS, ids=lambda p: str(p.relative_to(cfg.nbs_path)))
def test_notebook(nb):
    ok, secs = _run_nb(nb, skip_flags=cfg.tst_flags.split(), force_flags=FLAGS, basepath=cfg.config_path)
    assert ok, f'{nb.name} failed'
