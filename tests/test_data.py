"`modmem data` offline: each way a data set arrives (a folder, a download over HTTP or file://, Debian's package through `apt-get download`), each way it fails, and where the loaders find it. The mirrors and apt-get here are local stand-ins: nothing is downloaded."
import functools, gzip, hashlib, http.server, io, os, stat, struct, tempfile, threading, urllib.request
from pathlib import Path
import numpy as np
import pytest
from modmem.images import DATA_SETS, MNIST_FILES, check_idx, data_places, find_data, idx_files, load_mnist, provide_data
from modmem.image_mlp import image_task, load_image_set
from modmem.cli import main

SHAPES = dict(x_train=(6, 28, 28), y_train=(6,), x_test=(4, 28, 28), y_test=(4,))
NAMES = sorted(f'{f}.gz' for f in MNIST_FILES.values())


def _idx(path, arr, gz=True):
    arr = np.asarray(arr, dtype=np.uint8)
    data = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes()
    Path(path).write_bytes(gzip.compress(data) if gz else data)


def _write_set(folder, gz=True, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, shape in SHAPES.items():
        _idx(folder / (MNIST_FILES[k] + ('.gz' if gz else '')), rng.integers(0, 10 if k[0] == 'y' else 256, shape), gz)
    return folder


def _content_md5(path):
    return hashlib.md5(gzip.decompress(Path(path).read_bytes())).hexdigest()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    "A stand-in data set 'tiny' (MNIST's layout, 6 + 4 images) on a file:// mirror, no Debian package; $MODMEM_DATA an empty folder."
    mirror = _write_set(tmp_path / 'mirror')
    spec = dict(title='tiny MNIST', env='MODMEM_TINY', home='https://example.org/tiny', deb=None, deb_dir=None,
                urls=(mirror.as_uri() + '/',), shapes=SHAPES, gz_md5={},
                md5={k: (_content_md5(mirror / f'{f}.gz'),) for k, f in MNIST_FILES.items()})
    monkeypatch.setitem(DATA_SETS, 'tiny', spec)
    monkeypatch.setenv('MODMEM_DATA', str(tmp_path / 'data'))
    monkeypatch.delenv('MODMEM_TINY', raising=False)
    return spec, mirror


def test_check_idx(tmp_path):
    _idx(tmp_path / 'a.gz', np.arange(5)); _idx(tmp_path / 'a', np.arange(5), gz=False)
    for f in ('a.gz', 'a'): check_idx(tmp_path / f, (5,))
    content, packed = _content_md5(tmp_path / 'a.gz'), hashlib.md5((tmp_path / 'a.gz').read_bytes()).hexdigest()
    check_idx(tmp_path / 'a', (5,), md5=[content])                       # the content's checksum, plain
    check_idx(tmp_path / 'a.gz', (5,), md5=[content])                    # ... and gzipped
    check_idx(tmp_path / 'a.gz', (5,), gz_md5=[packed])                  # the published .gz's checksum
    check_idx(tmp_path / 'a', (5,), gz_md5=['0' * 32])                   # a .gz checksum says nothing about a plain file
    cases = [('a.gz', (6,), {}, 'holds an array of shape (5,), not (6,)'),
             ('a.gz', (5,), dict(md5=['0' * 32]), 'matches no published checksum'),
             ('a.gz', (5,), dict(gz_md5=['0' * 32]), 'matches no published checksum')]
    (tmp_path / 'cut.gz').write_bytes((tmp_path / 'a.gz').read_bytes()[:-5]); cases.append(('cut.gz', (5,), {}, 'cannot be read whole'))
    (tmp_path / 'short').write_bytes((tmp_path / 'a').read_bytes()[:-1]); cases.append(('short', (5,), {}, 'cut short or padded'))
    (tmp_path / 'long').write_bytes((tmp_path / 'a').read_bytes() + b'\0'); cases.append(('long', (5,), {}, 'cut short or padded'))
    (tmp_path / 'html').write_bytes(b'<html>404</html>'); cases.append(('html', (5,), {}, 'is not an IDX file'))
    (tmp_path / 'bad.gz').write_bytes(b'\x1f\x8b' + b'\0' * 30); cases.append(('bad.gz', (5,), {}, 'cannot be read whole'))
    for f, shape, kw, msg in cases:
        with pytest.raises(ValueError, match=None) as e: check_idx(tmp_path / f, shape, **kw)
        assert msg in str(e.value) and str(tmp_path / f) in str(e.value), (f, str(e.value))


def _listing(folder): return sorted(p.name for p in Path(folder).iterdir())


def test_download_over_http_from_the_first_mirror_that_answers(tiny, tmp_path):
    spec, mirror = tiny
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec['urls'] = ('http://127.0.0.1:1/', f'http://127.0.0.1:{server.server_port}/')   # the first refuses the connection
        said = []
        dest = provide_data('tiny', apt=False, say=said.append)
    finally: server.shutdown(); server.server_close()
    assert dest == tmp_path / 'data' / 'tiny' and _listing(dest) == NAMES                  # no temporary file left
    assert all(stat.S_IMODE((dest / f).stat().st_mode) == 0o644 for f in NAMES)
    assert all((dest / f).read_bytes() == (mirror / f).read_bytes() for f in NAMES)
    assert find_data('tiny') == dest and load_mnist(dest)['x_train'].shape == (6, 784)
    assert said[0] == f'tiny: downloading into {dest}' and f'from http://127.0.0.1:{server.server_port}/' in said[1], said
    said.clear()
    assert provide_data('tiny', say=said.append) == dest and said == [f'tiny: already in {dest}']


def test_a_bad_or_cut_download_never_counts(tiny, tmp_path, monkeypatch):
    spec, mirror = tiny
    good = (mirror / 't10k-images-idx3-ubyte.gz').read_bytes()
    (mirror / 't10k-images-idx3-ubyte.gz').write_bytes(good[:len(good) // 2])            # the mirror serves half the file
    with pytest.raises(FileNotFoundError) as e: provide_data('tiny', apt=False, say=lambda m: None)
    msg = str(e.value)
    assert 't10k-images-idx3-ubyte.gz cannot be read whole' in msg and 'run `modmem data tiny --from DIR`' in msg, msg
    dest = tmp_path / 'data' / 'tiny'
    assert 't10k-images-idx3-ubyte.gz' not in _listing(dest) and not [f for f in _listing(dest) if f.startswith('.')]
    with pytest.raises(FileNotFoundError, match='is not on this machine'): find_data('tiny')
    (mirror / 't10k-images-idx3-ubyte.gz').write_bytes(good)
    real = urllib.request.urlopen

    class Cut(io.BytesIO):                                                               # the connection drops mid-file
        def read(self, n=-1):
            if self.tell(): raise ConnectionResetError('connection reset by peer')
            return super().read(100)

    monkeypatch.setattr(urllib.request, 'urlopen', lambda url, timeout=None: Cut(Path(url[len('file://'):]).read_bytes()) if
                        url.endswith('t10k-images-idx3-ubyte.gz') else real(url, timeout=timeout))
    with pytest.raises(FileNotFoundError, match='connection reset by peer'): provide_data('tiny', apt=False, say=lambda m: None)
    assert 't10k-images-idx3-ubyte.gz' not in _listing(dest) and not [f for f in _listing(dest) if f.startswith('.')]
    monkeypatch.setattr(urllib.request, 'urlopen', real)
    assert provide_data('tiny', apt=False, say=lambda m: None) == dest and _listing(dest) == NAMES


def test_from_a_folder(tiny, tmp_path):
    spec, mirror = tiny
    plain = _write_set(tmp_path / 'plain', gz=False)                                     # uncompressed files are fine too
    dest = provide_data('tiny', src=plain, say=lambda m: None)
    assert _listing(dest) == sorted(MNIST_FILES.values()) and load_mnist(dest)['y_test'].shape == (4,)
    lease = provide_data('tiny', to=tmp_path / 'lease', say=lambda m: None)              # a copy for another machine
    assert lease == tmp_path / 'lease' / 'tiny' and _listing(lease) == sorted(MNIST_FILES.values())
    other = _write_set(tmp_path / 'other', seed=1)                                       # right shapes, other images
    with pytest.raises(ValueError, match='matches no published checksum'): provide_data('tiny', src=other, to=tmp_path / 'x')
    with pytest.raises(ValueError, match=r'not \(60000, 28, 28\)'): provide_data('fashion_mnist', src=mirror, to=tmp_path / 'x')
    assert not (tmp_path / 'x').exists()                                                 # every file is checked before any is written
    with pytest.raises(FileNotFoundError, match="does not hold tiny's four IDX files"): provide_data('tiny', src=tmp_path / 'nowhere', to=tmp_path / 'y')
    with pytest.raises(ValueError, match='modmem data provides fashion_mnist, mnist'): provide_data('cifar')


def _fake_apt(tmp_path, mirror, fail=None):
    "apt-get and dpkg-deb stand-ins on PATH: `apt-get download` writes a .deb, `dpkg-deb -x` unpacks the mirror's files to Debian's folder."
    bin_ = tmp_path / 'bin'; bin_.mkdir(exist_ok=True)
    apt = (f"echo \"$@\" >> {tmp_path}/apt.log\n" + (f"echo '{fail}' >&2; exit 100\n" if fail else "echo deb > dataset-tiny_1_all.deb\n"))
    (bin_ / 'apt-get').write_text('#!/bin/sh\n' + apt)
    (bin_ / 'dpkg-deb').write_text(f'#!/bin/sh\nmkdir -p "$3/usr/share/datasets/tiny" && cp {mirror}/*.gz "$3/usr/share/datasets/tiny/"\n')
    for f in ('apt-get', 'dpkg-deb'): (bin_ / f).chmod(0o755)
    return bin_


def test_debian_package_through_apt_get_download(tiny, tmp_path, monkeypatch):
    spec, mirror = tiny
    spec.update(deb='dataset-tiny', deb_dir='/usr/share/datasets/tiny', urls=('http://127.0.0.1:1/',))
    monkeypatch.setenv('PATH', f"{_fake_apt(tmp_path, mirror)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp')); (tmp_path / 'tmp').mkdir()
    said = []
    dest = provide_data('tiny', say=said.append)
    assert _listing(dest) == NAMES and (tmp_path / 'apt.log').read_text() == 'download dataset-tiny\n'
    assert said[1].startswith('  no download: http://127.0.0.1:1/') and said[-1] == f"tiny: copied from Debian's dataset-tiny into {dest}", said
    assert not list((tmp_path / 'tmp').iterdir())                                        # the .deb and its unpacked files are gone


def test_every_way_failing_says_what_to_do(tiny, tmp_path, monkeypatch):
    spec, mirror = tiny
    spec.update(deb='dataset-tiny', deb_dir='/usr/share/datasets/tiny', urls=('http://127.0.0.1:1/',))
    monkeypatch.setenv('PATH', f"{_fake_apt(tmp_path, mirror, fail='E: Unable to locate package dataset-tiny')}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(FileNotFoundError) as e: provide_data('tiny', say=lambda m: None)
    msg = str(e.value)
    for part in ('could not provide tiny (download: http://127.0.0.1:1/train-images-idx3-ubyte.gz:',
                 'apt-get: apt-get download dataset-tiny failed: E: Unable to locate package dataset-tiny (sudo apt-get update first?)',
                 'from https://example.org/tiny) in a folder and run `modmem data tiny --from DIR`',
                 "or install Debian's package: sudo apt-get install dataset-tiny"):
        assert part in msg, (part, msg)
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))                                  # not Debian: no apt-get
    with pytest.raises(FileNotFoundError, match='apt-get and dpkg-deb not found'): provide_data('tiny', say=lambda m: None)
    with pytest.raises(FileNotFoundError, match=r'\(no download and no apt-get allowed\)'):
        provide_data('tiny', download=False, apt=False, say=lambda m: None)


def test_where_modmem_looks(tiny, tmp_path, monkeypatch):
    spec, mirror = tiny
    with pytest.raises(FileNotFoundError) as e: find_data('tiny')
    assert str(e.value) == (f"tiny MNIST (tiny) is not on this machine (looked in {tmp_path / 'data' / 'tiny'} ($MODMEM_DATA)): "
                            "run `modmem data tiny`: it downloads the four files; `modmem data tiny --from DIR` copies them from a folder")
    spec['deb_dir'] = str(mirror)                                                        # Debian's folder, last
    assert find_data('tiny') == mirror
    data = provide_data('tiny', to=tmp_path / 'data', say=lambda m: None)                # the data folder comes first
    assert find_data('tiny') == data == tmp_path / 'data' / 'tiny'
    monkeypatch.setenv('MODMEM_TINY', str(tmp_path / 'empty'))                           # the data set's own variable: alone
    with pytest.raises(FileNotFoundError, match=r'looked in .*empty \(\$MODMEM_TINY\)\)'): find_data('tiny')
    monkeypatch.setenv('MODMEM_TINY', str(mirror))
    assert find_data('tiny') == mirror and find_data('tiny', root=data) == data
    with pytest.raises(FileNotFoundError, match=r'\(root\)'): find_data('tiny', root=tmp_path)
    monkeypatch.delenv('MODMEM_DATA')                                                    # default: ~/.cache/modmem/data
    monkeypatch.setenv('HOME', str(tmp_path / 'home')); monkeypatch.delenv('XDG_CACHE_HOME', raising=False); monkeypatch.delenv('MODMEM_TINY')
    spec['deb_dir'] = None
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'home' / '.cache' / 'modmem' / 'data' / 'tiny')): find_data('tiny')


def test_the_image_loader_reads_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('MODMEM_DATA', str(tmp_path / 'data'))
    monkeypatch.delenv('MODMEM_FASHION_MNIST', raising=False)
    monkeypatch.setitem(DATA_SETS['fashion_mnist'], 'deb_dir', str(tmp_path / 'no-debian'))
    load_image_set.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match='run `modmem data fashion_mnist`'): image_task('fashion_mnist', 5)
        _write_set(tmp_path / 'data' / 'fashion_mnist')                                  # the loader looks for the files, not their size
        t = image_task('fashion_mnist')
        assert (len(t), t.x.shape[1]) == (10, 784)
    finally: load_image_set.cache_clear()


def test_command_line(tiny, tmp_path, capsys):
    spec, mirror = tiny
    assert main(['data', 'tiny', '--from', str(mirror), '--to', str(tmp_path / 'lease')]) == 0
    out = capsys.readouterr().out
    assert f"tiny: copied from {mirror} into {tmp_path / 'lease' / 'tiny'}" in out and f"MODMEM_DATA={tmp_path / 'lease'}" in out, out
    assert _listing(tmp_path / 'lease' / 'tiny') == NAMES
    (tmp_path / 'file').write_text('x')
    for argv, msg in [(['data', 'tiny', '--offline'], 'could not provide tiny (no download and no apt-get allowed)'),
                      (['data', 'tiny', '--to', str(tmp_path / 'file')], 'is a file, not a folder'),
                      (['data', 'tiny', 'mnist', '--from', str(mirror)], '--from copies one data set'),
                      (['data'], 'name a data set to provide'), (['data', 'nope'], "unknown data set 'nope'")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith('modmem: error: ') and err.count('\n') == 1 and msg in err, (argv, err)
    assert main(['data', 'tiny']) == 0                                                   # downloaded from the file:// mirror
    assert 'tiny: ready in' in capsys.readouterr().out and _listing(tmp_path / 'data' / 'tiny') == NAMES


@pytest.mark.skipif(not any(idx_files(d) for _, d in data_places('fashion_mnist')),
                    reason='Fashion-MNIST is not on this machine (`modmem data fashion_mnist` provides it)')
def test_real_fashion_mnist_matches_its_checksums():
    s = DATA_SETS['fashion_mnist']
    for k, p in idx_files(find_data('fashion_mnist')).items():
        check_idx(p, s['shapes'][k], s['md5'][k], s['gz_md5'][k])
