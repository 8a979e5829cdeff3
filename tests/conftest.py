"Shared fixtures: the device the device tests run on, and a context that makes torch's default device `meta`."
import contextlib, os
import pytest
import torch


def _available(dev: torch.device) -> bool:
    if dev.type == 'cuda': return torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
    if dev.type == 'mps': return torch.backends.mps.is_available()
    return dev.type == 'cpu'


@pytest.fixture(scope='session')
def device() -> torch.device:
    "The device named by $MODMEM_TEST_DEVICE (default 'cpu'); the test is skipped, saying why, when it is not available."
    name = os.environ.get('MODMEM_TEST_DEVICE', 'cpu')
    try: dev = torch.device(name)
    except RuntimeError as e: raise ValueError(f"MODMEM_TEST_DEVICE={name!r} is not a torch device name (e.g. 'cpu', 'cuda', 'cuda:1'): {e}")
    if not _available(dev):
        pytest.skip(f"MODMEM_TEST_DEVICE={name!r} asks for {dev}, which this machine does not have "
                    f"(torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})")
    return dev


@contextlib.contextmanager
def meta_default():
    "Run a block with torch's default device set to 'meta', restoring the previous default afterwards."
    before = torch.get_default_device()
    torch.set_default_device('meta')
    try: yield
    finally: torch.set_default_device(before)


@pytest.fixture
def on_meta():
    "The `meta_default` context manager, for tests: `with on_meta(): ...`."
    return meta_default
