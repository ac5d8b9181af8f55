import os

# One thread per core, shared out between pytest-xdist's workers, set before torch starts its pool and
# inherited by every subprocess (studios, CLIs, notebook kernels). Two workers with two threads each on
# two cores ran a SmolLM2 step 2.5x slower than one thread each (18-26 s against 7.5-8 s, measured).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, len(os.sched_getaffinity(0)) // _WORKERS)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import ROOT  # noqa: E402

# The dequantised SmolLM2 is cached across test runs; each test that needs a clean data dir sets its own home.
os.environ.setdefault("ADAPTER_STUDIO_CACHE", str(ROOT / ".cache" / "models"))
os.environ.setdefault("ADAPTER_STUDIO_HOME", str(ROOT / ".cache" / "home"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(THREADS)

# The heaviest test files (minutes each on two cores), longest first: pytest-xdist hands out work in
# collection order, and a heavy file started last keeps one worker busy while the other idles.
HEAVY_FIRST = (
    "test_presets_browser.py",
    "test_engine.py",
    "test_two_visitors.py",
    "test_notebooks.py",
    "test_zerogpu.py",
    "test_studio_api.py",
    "test_wizard_browser.py",
    "test_docs.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Each test file is one xdist group (its module fixtures, a served studio, a loaded model, are built
    once), except the notebooks, each its own; the heaviest files go first."""
    for item in items:
        file = item.path.name
        item.add_marker(pytest.mark.xdist_group(item.nodeid if file == "test_notebooks.py" else file))
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))


@pytest.fixture
def ids():
    torch.manual_seed(1)
    return torch.randint(3, 96, (3, 9))


@pytest.fixture
def hf_home(monkeypatch, tmp_path):
    """A fresh HF_HOME (its hub cache read at call time), online unless a test says otherwise."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.fixture
def offline(monkeypatch, hf_home):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hf_home
