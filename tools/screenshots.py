"""Look at the built docs site in a real browser, offline, with its math rendered.

A developer's check tool (CI neither runs nor needs it). It serves a built site (`_docs`, as `nbdev_docs` writes it)
on 127.0.0.1 and takes headless-Chromium screenshots of some pages. The site loads MathJax 3 from a CDN, which these
machines cannot reach, so the server rewrites every HTML page on the fly: the CDN MathJax `<script>` becomes a local
MathJax 2 (Debian's `libjs-mathjax` + `fonts-mathjax`, served under `/mathjax/`) configured for the `\\(...\\)` and
`\\[...\\]` that Quarto emits, and other scripts from a CDN are dropped (offline they only make the page wait).
The files on disk are not changed.

For every page it also reports, from the DOM Chromium has after rendering, how many formulas MathJax typeset, how
many TeX errors it showed and how many `\\(`/`\\[` were left untypeset, and it fetches every local `href`/`src` of the
page through the server and lists those that do not answer 200.

    apt-get install -y chromium libjs-mathjax fonts-mathjax
    nbdev_docs                                          # with Quarto on PATH (../shared/tools/quarto on these machines)
    python tools/screenshots.py _docs /tmp/shots        # the default pages
    python tools/screenshots.py _docs /tmp/shots fourier.html 'fourier.html#discrete-log-re-indexing' --height 2000

A page may carry a `#fragment`: the screenshot then starts at that heading. Exit status 1 if a page has a TeX error,
untypeset math, a broken local link or content wider than the window (it would scroll sideways).
"""
import argparse, functools, html.parser, http.server, re, shutil, subprocess, sys, threading, urllib.error
import urllib.parse, urllib.request
from pathlib import Path

PAGES = ('index.html', 'fourier.html', 'phases.html', 'figures.html', 'explorers.html')
MATHJAX_DIR = '/usr/share/javascript/mathjax'
# MathJax 2 for Quarto's output: inline \(...\), display \[...\], CommonHTML output. Quarto's own page script calls
# MathJax 3's `MathJax.typeset([el])` on content it shows later (tabs, hover previews): map it to MathJax 2's queue.
LOCAL_MATHJAX = r"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['\\(', '\\)']], displayMath: [['\\[', '\\]']], processEscapes: true,
            processEnvironments: true},
  TeX: {extensions: ['AMSmath.js', 'AMSsymbols.js', 'noErrors.js', 'noUndefined.js'],
        noErrors: {disabled: true}, noUndefined: {disabled: true}},
  messageStyle: 'none', showMathMenu: false
});
MathJax.typeset = function (els) { MathJax.Hub.Queue(['Typeset', MathJax.Hub, els && els[0]]); };
</script>
<script type="text/javascript" src="/mathjax/MathJax.js?config=TeX-AMS_CHTML"></script>"""
# Once MathJax has typeset the page (or at `load` without MathJax) the page reports, in a <meta name="modmem-layout">
# that --dump-dom shows, how wide its content is against the window (scrollWidth, innerWidth). With `?at=ID` in the
# URL it also reports where element ID starts (in its <title>), and with `&shift=N` it moves the page up so that ID
# sits N pixels below the window's top: Chromium's --screenshot neither follows a #fragment nor keeps a scroll, and a window as
# tall as a long page (the figures page is tens of thousands of pixels) takes minutes to shoot.
AT_SCRIPT = r"""<script>(function () {
  var q = new URLSearchParams(location.search), id = q.get('at');
  function mark() {
    var meta = document.createElement('meta'); meta.name = 'modmem-layout';
    meta.content = document.documentElement.scrollWidth + ',' + window.innerWidth + ',' + document.documentElement.scrollHeight;
    document.head.appendChild(meta);
    var imgs = document.createElement('meta'); imgs.name = 'modmem-images';  // natural:shown width of every figure
    // images inside a folded callout (display: none until opened) are left out: they have no shown width
    imgs.content = Array.from(document.querySelectorAll('main img')).filter(function (i) { return i.naturalWidth > 0 && i.offsetParent !== null; })
      .map(function (i) { return i.naturalWidth + ':' + Math.round(i.getBoundingClientRect().width); }).join(' ');
    document.head.appendChild(imgs);
    if (!id) return;
    var el = document.getElementById(id), top = el ? Math.round(el.getBoundingClientRect().top + window.scrollY) : -1;
    document.title = 'modmem-at:' + top;
    if (el && q.get('shift')) document.body.style.transform = 'translateY(-' + Math.max(0, top - (+q.get('shift') || 70)) + 'px)';
  }
  if (window.MathJax && MathJax.Hub) MathJax.Hub.Register.StartupHook('End', mark);
  else window.addEventListener('load', mark);
})();</script>"""
CDN_MATHJAX = re.compile(r'<script[^>]*src="https?://[^"]*mathjax[^"]*"[^>]*>\s*</script>', re.I)
CDN_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', re.I)


def rewrite(page: str) -> str:
    "A page's HTML with the CDN MathJax replaced by the local MathJax 2 and other CDN scripts removed."
    page, n = CDN_MATHJAX.subn(lambda m: LOCAL_MATHJAX, page, count=1)
    return CDN_SCRIPT.sub('', page).replace('</body>', AT_SCRIPT + '</body>', 1)


class Handler(http.server.SimpleHTTPRequestHandler):
    "Serves the site, with `/mathjax/` from the local MathJax and every .html page rewritten (see `rewrite`)."
    def __init__(self, *args, site: Path, mathjax: Path, **kw):
        self.site, self.mathjax = site, mathjax
        super().__init__(*args, directory=str(site), **kw)

    def log_message(self, *args): pass

    def translate_path(self, path):
        p = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if p.startswith('/mathjax/'): return str(self.mathjax / p[len('/mathjax/'):])
        return super().translate_path(path)

    def do_GET(self):
        fs = Path(self.translate_path(self.path))
        if fs.is_dir() and (fs / 'index.html').exists(): fs = fs / 'index.html'
        if fs.suffix != '.html' or not fs.is_file() or self.path.startswith('/mathjax/'): return super().do_GET()
        body = rewrite(fs.read_text(encoding='utf-8')).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # Chromium hangs up when done
            super().handle_error(request, client_address)


def serve(site: Path, mathjax: Path):
    "Start the server on a free port of 127.0.0.1 in a daemon thread; returns (server, base URL)."
    srv = _Server(('127.0.0.1', 0), functools.partial(Handler, site=site, mathjax=mathjax))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'


def chromium(browser: str, url: str, *args, width=1400, height=1000, budget_ms=10000, timeout=120) -> str:
    cmd = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', f'--window-size={width},{height}',
           f'--virtual-time-budget={budget_ms}', *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.refs = []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ('href', 'src') and v: self.refs.append(v)


def math_report(dom: str) -> dict:
    "Formulas MathJax typeset, TeX errors shown, and delimiters left untypeset, in a rendered page's DOM."
    text = re.sub(r'<script[^>]*>.*?</script>|<style[^>]*>.*?</style>|<code[^>]*>.*?</code>|<pre[^>]*>.*?</pre>', '',
                  dom, flags=re.S | re.I)
    return dict(formulas=len(re.findall(r'class="math (?:inline|display)', dom)), typeset=len(re.findall(r'<script type="math/tex', dom)),
                errors=len(re.findall(r'class="[^"]*mjx-merror', dom)) + len(re.findall(r'class="[^"]*MathJax_Error', dom)),
                raw=len(re.findall(r'\\[(\[]', re.sub(r'<[^>]+>', '', text))))


def layout(dom: str) -> tuple:
    "(content width, window width) of a rendered page, as its `modmem-layout` meta reports them; (0, 0) when it did not."
    m = re.search(r'<meta name="modmem-layout" content="(\d+),(\d+)(?:,\d+)?"', dom)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def height(dom: str) -> int:
    "The height in px of a rendered page, as its `modmem-layout` meta reports it; 0 when it did not."
    m = re.search(r'<meta name="modmem-layout" content="\d+,\d+,(\d+)"', dom)
    return int(m[1]) if m else 0


def figures(dom: str) -> list[tuple[int, int]]:
    "(natural width, shown width) in px of every image in a rendered page's main column."
    m = re.search(r'<meta name="modmem-images" content="([\d: ]*)"', dom)
    return [tuple(map(int, x.split(':'))) for x in m[1].split()] if m else []


def broken_links(base: str, page: str, dom: str) -> list:
    "The page's local href/src (no external URLs, no fragments of other pages' anchors) that do not answer 200."
    p = _Refs(); p.feed(dom)
    bad, seen = [], set()
    for ref in p.refs:
        u = urllib.parse.urljoin(base + page, ref)
        if not u.startswith(base): continue
        u = u.split('#')[0]
        if u in seen or u.rstrip('/') + '/' == base + 'mathjax/': continue
        seen.add(u)
        try:
            with urllib.request.urlopen(u, timeout=10) as r:
                if r.status != 200: bad.append(f'{ref} ({r.status})')
        except urllib.error.HTTPError as e: bad.append(f'{ref} ({e.code})')
        except OSError as e: bad.append(f'{ref} ({e})')
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('docs', type=Path, help='the built site (_docs)')
    ap.add_argument('out', type=Path, help='folder for the PNGs')
    ap.add_argument('pages', nargs='*', default=PAGES, help=f'pages relative to the site, optionally with #fragment '
                                                            f'(default: {" ".join(PAGES)})')
    ap.add_argument('--width', type=int, default=1400)
    ap.add_argument('--height', type=int, default=1000)
    ap.add_argument('--above', type=int, default=70, help='pixels shown above a #fragment (a little context, or what ends there)')
    ap.add_argument('--budget-ms', type=int, default=10000, help="Chromium's --virtual-time-budget")
    ap.add_argument('--mathjax', type=Path, default=Path(MATHJAX_DIR), help='a MathJax 2 folder (holds MathJax.js)')
    ap.add_argument('--chromium', default=shutil.which('chromium') or shutil.which('chromium-browser') or 'chromium')
    a = ap.parse_args(argv)
    if not (a.docs / 'index.html').exists(): ap.error(f'{a.docs} holds no built site (no index.html): run nbdev_docs')
    if not (a.mathjax / 'MathJax.js').exists(): ap.error(f'no MathJax.js in {a.mathjax}: apt-get install libjs-mathjax')
    a.out.mkdir(parents=True, exist_ok=True)
    srv, base = serve(a.docs.resolve(), a.mathjax.resolve())
    failed = False
    try:
        for page in a.pages:
            name = re.sub(r'[^A-Za-z0-9_.-]+', '_', page.replace('.html', '').replace('#', '__')) + '.png'
            png = a.out / name
            kw = dict(width=a.width, height=a.height, budget_ms=a.budget_ms)
            path, _, at = page.partition('#')
            query = f'?at={urllib.parse.quote(at)}' if at else ''
            dom = chromium(a.chromium, base + path + query, '--dump-dom', **kw)
            if at:
                found = re.search(r'<title>modmem-at:(-?\d+)</title>', dom)
                if not found or int(found[1]) < 0: print(f'FAIL {page}: no element with id {at!r}'); failed = True; continue
            png.unlink(missing_ok=True)
            chromium(a.chromium, base + path + (query + f'&shift={a.above}' if at else ''), f'--screenshot={png.resolve()}', **kw)
            m, bad, (wide, window) = math_report(dom), broken_links(base, path, dom), layout(dom)
            ok = (png.exists() and m['typeset'] >= m['formulas'] and m['errors'] == 0 and m['raw'] == 0
                  and not bad and wide <= window)
            failed |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} {page}: {png if png.exists() else 'no screenshot'}; math: {m['typeset']} of {m['formulas']} "
                  f"formulas typeset, {m['errors']} TeX errors, {m['raw']} untypeset; links: {len(bad)} broken; "
                  f"width: {wide} px in a {window} px window")
            for b in bad: print(f'       broken: {b}')
    finally:
        srv.shutdown()
    return int(failed)


if __name__ == '__main__':
    sys.exit(main())
