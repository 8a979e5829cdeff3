"""Drive the three explorers in a live JupyterLab with a real browser, and save a screenshot of each.

    python tools/explorers_in_lab.py /tmp/lab-shots [--browser /usr/bin/chromium] [--kernel-python PY]

What it does: writes a small notebook (a p = 23 phase-diagram sweep, paper 2's network with one and two members) into a
temporary folder, starts JupyterLab there with modmem's Python as the kernel, opens the notebook in Chromium (Playwright),
runs every cell, then works each explorer's controls the way a reader would — picks another cell of the phase diagram
through its dropdowns, switches the neuron explorer's member, switches the filtration explorer's rule — and checks that
the picture changes, that no control's label is cut, and that the phase explorer draws its phase diagram. Screenshots
before and after go to the output folder; a JSON summary goes to stdout; the exit status is 1 when a check failed.

Run it with a Python that has `jupyterlab`, `ipywidgets` and `playwright` (its Python package only: the browser is
Debian's Chromium); `--kernel-python` names the Python that has modmem, `ipykernel` and `ipywidgets` (default: the same
one). None of these are modmem dependencies, e.g. `python -m venv /tmp/lab && /tmp/lab/bin/pip install jupyterlab
ipywidgets playwright`, then `/tmp/lab/bin/python tools/explorers_in_lab.py /tmp/lab-shots --kernel-python .venv/bin/python`. It is a developer's check, not part of the tests: it takes a minute and needs a browser.
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

CELLS = [
    "import tempfile, torch\ntorch.set_num_threads(1)\nfrom modmem.config import TrainConfig\nfrom modmem.training import train\n"
    "from modmem.sweep import sweep\nfrom modmem.dynamics import paper2_config\n"
    "from modmem.explorers import PhaseExplorer, NeuronExplorer, FiltrationExplorer",
    "base = TrainConfig(p=23, width=64, steps=300, split='authors', seed=1, log_every=10)\n"
    "res = sweep(base, {'weight_decay': [0.0, 2.0], 'train_frac': [0.5, 0.8], 'noise': [0.1, 0.3]},\n"
    "            cache=tempfile.mkdtemp(), weights=True, progress=False, device='cpu')\npe = PhaseExplorer(res, 'weight_decay')\npe",
    "m8, e8 = res.network(int(res.results.run.iloc[-1]))   # a chunk of the sweep: several members\nne = NeuronExplorer(m8, e8)\nne",
    "cfg = paper2_config(p=23, width=65, lr=1e-2, noise=0.3, steps=800, log_every=800)\n"
    "r3 = train(cfg, members=[dict(seed=s, split_seed=s, noise_seed=s) for s in (0, 1)], device='cpu', progress=False)\n"
    "fe = FiltrationExplorer(r3.model, r3.data)\nfe",
    "print('ALL CELLS RAN')",
]


def notebook(kernel: str) -> dict:
    return {'cells': [{'cell_type': 'code', 'metadata': {}, 'source': c, 'outputs': [], 'execution_count': None} for c in CELLS],
            'metadata': {'kernelspec': {'name': kernel, 'display_name': kernel, 'language': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def start_lab(kernel_python: str, root: Path, port: int, kernel: str):
    "JupyterLab (this Python's) on 127.0.0.1:port serving `root`, with `kernel_python` as the kernel `kernel` (one thread)."
    prefix = root / '_jupyter'
    subprocess.run([kernel_python, '-m', 'ipykernel', 'install', '--prefix', str(prefix), '--name', kernel], check=True,
                   capture_output=True)
    spec = prefix / 'share/jupyter/kernels' / kernel / 'kernel.json'
    d = json.loads(spec.read_text()); d['env'] = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}; spec.write_text(json.dumps(d))
    env = dict(os.environ, JUPYTER_PATH=str(prefix / 'share/jupyter'))
    lab = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
                            "--IdentityProvider.token=", '--ServerApp.password=', f'--ServerApp.root_dir={root}',
                            '--allow-root', '--LabApp.news_url=None', f'--LabApp.workspaces_dir={root / "_workspaces"}',
                            f'--LabApp.user_settings_dir={root / "_settings"}'],
                           env=env, stdout=subprocess.DEVNULL, stderr=open(root / '_lab.log', 'w'))
    for _ in range(120):
        try: urllib.request.urlopen(f'http://127.0.0.1:{port}/api', timeout=1); return lab
        except OSError: time.sleep(0.5)
    lab.kill(); sys.exit(f'JupyterLab did not start; see {root / "_lab.log"}')


def drive(url: str, shots: Path, browser: str) -> dict:
    from playwright.sync_api import sync_playwright
    r = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=['--no-sandbox'])
        pg = b.new_page(viewport={'width': 1400, 'height': 1000})
        pg.goto(url); pg.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120000)
        pg.wait_for_timeout(3000)
        dialog = pg.locator('.jp-Dialog .jp-mod-accept')   # JupyterLab may still ask which kernel: the notebook's
        if dialog.count(): dialog.first.click(); pg.wait_for_timeout(1000)
        news = pg.locator('.Toastify__toast button:has-text("No")')   # the "Jupyter news?" toast covers a corner
        if news.count(): news.first.click()
        pg.click('text=Run >> nth=0'); pg.click('text=Run All Cells'); t0 = time.time()
        try: pg.wait_for_selector('.jp-OutputArea-output:has-text("ALL CELLS RAN")', timeout=300000)
        except Exception:
            pg.screenshot(path=str(shots / 'stuck.png')); raise RuntimeError(f'the notebook did not finish in 5 min: {shots / "stuck.png"}')
        r['run_all_s'] = round(time.time() - t0, 1); pg.wait_for_timeout(1500)
        ws = pg.locator('.jp-OutputArea-output .widget-vbox'); r['explorers'] = ws.count()
        r['labels'] = pg.evaluate("""() => [...document.querySelectorAll('.widget-label, .widget-label-basic')]
            .map(e => [e.textContent.trim(), e.scrollWidth <= e.clientWidth + 1]).filter(x => x[0] && x[0] !== '\\u200b')""")
        img = lambda k: ws.nth(k).locator('img').first.get_attribute('src')
        names = ['phase', 'neuron', 'filtration']
        for k, name in enumerate(names): ws.nth(k).scroll_into_view_if_needed(); ws.nth(k).screenshot(path=str(shots / f'{name}.png'))
        moves = {'phase': lambda s: [s.nth(i).select_option(index=s.nth(i).locator('option').count() - 1) for i in range(s.count())],
                 'neuron': lambda s: s.first.select_option(index=1),
                 'filtration': lambda s: s.first.select_option(index=1)}
        for k, name in enumerate(names):
            before, sel = img(k), ws.nth(k).locator('select')
            r[f'{name}_options'] = [sel.nth(i).locator('option').all_inner_texts() for i in range(sel.count())]
            moves[name](sel); pg.wait_for_timeout(4000)
            r[f'{name}_changed'] = img(k) != before
            ws.nth(k).screenshot(path=str(shots / f'{name}_after.png'))
        b.close()
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', type=Path); ap.add_argument('--browser', default='/usr/bin/chromium')
    ap.add_argument('--kernel-python', default=sys.executable)
    a = ap.parse_args(argv)
    if not Path(a.browser).exists(): sys.exit(f'no browser at {a.browser}: apt-get install -y chromium, or pass --browser')
    for mod in ('jupyterlab', 'playwright'):
        try: __import__(mod)
        except ImportError: sys.exit(f'{mod} is not installed for {sys.executable}: pip install jupyterlab ipywidgets playwright')
    a.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix='modmem-lab-')); kernel = 'modmem-explorers'
    (root / 'explorers.ipynb').write_text(json.dumps(notebook(kernel)))
    port = free_port(); lab = start_lab(a.kernel_python, root, port, kernel)
    try: r = drive(f'http://127.0.0.1:{port}/lab/tree/explorers.ipynb', a.out, a.browser)
    finally:
        lab.terminate(); lab.wait(30); shutil.rmtree(root, ignore_errors=True)
    r['labels_cut'] = [t for t, whole in r.pop('labels') if not whole]
    ok = r['explorers'] == 3 and not r['labels_cut'] and all(r[f'{n}_changed'] for n in ('phase', 'neuron', 'filtration'))
    print(json.dumps(r, indent=1)); print('ok' if ok else 'FAILED', f'— screenshots in {a.out}')
    return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
