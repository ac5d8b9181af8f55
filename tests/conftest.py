import os

import pytest
import torch
from helpers import ROOT

# The dequantised SmolLM2 is cached across test runs; each test that needs a clean data dir sets its own home.
os.environ.setdefault("ADAPTER_STUDIO_CACHE", str(ROOT / ".cache" / "models"))
os.environ.setdefault("ADAPTER_STUDIO_HOME", str(ROOT / ".cache" / "home"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def ids():
    torch.manual_seed(1)
    return torch.randint(3, 96, (3, 9))
