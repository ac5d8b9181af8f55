"""The studio says where training runs: this machine, a CPU Space, a dedicated GPU Space, or ZeroGPU
(where the background training thread is outside every GPU request, so it trains on the CPU)."""

import importlib.util
import sys
import types

import pytest
import torch
from helpers import ROOT

from studio import hardware as hw

SPACE_VARS = ("SPACE_ID", "SYSTEM", "SPACES_ZERO_GPU", "CPU_CORES")


@pytest.fixture
def machine(monkeypatch):
    """A clean environment with no GPU; each test sets what its machine has."""
    for var in SPACE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)

    def with_gpu(name="NVIDIA A10G", gib=24):
        props = types.SimpleNamespace(name=name, total_memory=gib * 2**30)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: props)

    monkeypatch.with_gpu = with_gpu
    return monkeypatch


def test_local_cpu(machine):
    found = hw.hardware()
    assert found.kind == "local-cpu" and found.training_device.startswith("CPU")
    assert "Running on CPU" in found.notice and "Space" not in found.notice
    assert hw.on_cpu() and hw.device_summary().startswith("CPU")


def test_local_gpu_needs_no_notice(machine):
    machine.with_gpu("NVIDIA H100", 80)
    found = hw.hardware()
    assert found.kind == "local-gpu" and found.notice == ""
    assert found.training_device == found.serving_device == "GPU: NVIDIA H100, 80 GiB"
    assert not hw.on_cpu() and hw.device_summary() == "GPU: NVIDIA H100, 80 GiB"


@pytest.mark.parametrize("var, value", [("SPACE_ID", "someone/adapter-studio"), ("SYSTEM", "spaces")])
def test_cpu_basic_space(machine, var, value):
    machine.setenv(var, value)
    found = hw.hardware()
    assert found.kind == "space-cpu" and hw.on_space()
    assert "Training runs on this Space's CPU" in found.notice and "CPU basic" in found.notice
    assert "a minute or two" in found.notice
    assert "Duplicate the Space with a GPU hardware tier" in found.notice
    assert hw.on_cpu()


def test_cpu_upgrade_space_is_named(machine):
    machine.setenv("SPACE_ID", "someone/adapter-studio")
    machine.setenv("CPU_CORES", "8")
    assert "CPU upgrade" in hw.hardware().notice


def test_dedicated_gpu_space_names_its_gpu(machine):
    machine.setenv("SPACE_ID", "someone/adapter-studio")
    machine.with_gpu("NVIDIA L4", 22)
    found = hw.hardware()
    assert found.kind == "space-gpu" and not hw.on_cpu()
    assert "NVIDIA L4" in found.notice and "GPU" in found.training_device
    assert "CPU" not in found.notice


@pytest.mark.parametrize("cuda", [False, True])  # the `spaces` package may report CUDA in the main process
def test_zero_gpu_says_training_runs_in_gpu_slices_charged_to_the_visitor(machine, cuda):
    machine.setenv("SPACE_ID", "someone/adapter-studio")
    machine.setenv("SPACES_ZERO_GPU", "true")
    if cuda:
        machine.with_gpu()
        machine.setattr(torch.cuda, "get_device_properties", lambda i=0: pytest.fail("no GPU outside a request"))
    found = hw.hardware()
    assert found.kind == "zero-gpu" and hw.on_zero_gpu()
    assert found.training_device == "ZeroGPU, in slices" and "ZeroGPU" in found.serving_device
    notice = found.notice
    assert "Training runs on ZeroGPU, in slices" in notice
    assert "charged to the daily GPU quota of the visitor" in notice
    assert "Close the page and the run pauses" in notice and "Past runs → Resume" in notice
    assert "duplicate the Space with a dedicated GPU" in notice
    assert not hw.on_cpu()  # the trainer's slices lease the GPU
    assert hw.device_label("GPU slices") == "ZeroGPU, in slices leased by your requests"
    assert "ZeroGPU" in hw.device_summary()


def test_gpu_decorator_is_the_identity_off_zero_gpu(machine):
    def f(x):
        return x + 1

    assert not hw.ON_ZERO_GPU
    assert hw.gpu(f) is f and hw.gpu(duration=60)(f) is f


def load_fresh(monkeypatch, env: dict[str, str], spaces: types.ModuleType | None):
    """studio/hardware.py imported anew under `env` (and with or without a `spaces` package)."""
    for var in SPACE_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(sys.modules, "spaces", spaces)  # None: `import spaces` raises ImportError
    spec = importlib.util.spec_from_file_location("hardware_under_test", ROOT / "studio" / "hardware.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_zero_gpu_flag_comes_from_the_environment(monkeypatch):
    marker = object()
    fake_spaces = types.ModuleType("spaces")
    fake_spaces.GPU = lambda fn=None, **kw: marker
    on_zero = load_fresh(monkeypatch, {"SPACE_ID": "a/b", "SPACES_ZERO_GPU": "true"}, fake_spaces)
    assert on_zero.ON_ZERO_GPU and on_zero.gpu is fake_spaces.GPU

    # The `spaces` package alone (installed off ZeroGPU) changes nothing.
    off = load_fresh(monkeypatch, {"SPACE_ID": "a/b"}, fake_spaces)
    assert not off.ON_ZERO_GPU and off.gpu(len) is len

    # The flag without the package: a warning, and the decorator stays the identity.
    missing = load_fresh(monkeypatch, {"SPACES_ZERO_GPU": "true"}, None)
    assert not missing.ON_ZERO_GPU and missing.gpu(len) is len


def test_a_leased_chat_stream_closes_its_gpu_call_when_stop_is_set():
    """On ZeroGPU the answer comes out of a GPU call's generator; Stop, set in this process, must close it
    (which is what reaches the forked worker), after the piece in hand."""
    import threading

    from studio.gpu_calls import LeasedStream

    closed = []

    def pieces():
        try:
            yield from ["Once", " upon", " a", " time"]
            yield {"repeated": True}
        finally:
            closed.append(True)

    stop = threading.Event()
    got = []
    for piece in LeasedStream(pieces(), stop):
        got.append(piece)
        stop.set()
    assert got == ["Once"] and closed == [True]
    whole = LeasedStream(pieces(), threading.Event())
    assert "".join(whole) == "Once upon a time" and whole.repeated


def test_zero_gpu_refuses_a_full_fine_tune_which_would_train_in_the_main_process(machine, tmp_path):
    from helpers import ROUTING

    from adapter_core import AdapterError
    from adapter_core.engine.config import TrainConfig
    from studio.quotas import check_config
    from studio.service import Studio

    machine.setenv("SPACE_ID", "someone/adapter-studio")
    machine.setenv("SPACES_ZERO_GPU", "true")
    studio = Studio(tmp_path / "home")
    with pytest.raises(AdapterError, match="A full fine-tune cannot run on ZeroGPU"):
        check_config(studio, TrainConfig(base="minilm", data=ROUTING, name="full", mode="full"))
    adapter = TrainConfig(base="minilm", data=ROUTING, name="adapter")
    check_config(studio, adapter)
    assert adapter.device == "cpu"  # the trainer's own device; its steps run in slices


def test_the_zero_gpu_main_process_answers_no_cuda_and_its_forks_ask_torch(monkeypatch):
    """On ZeroGPU the main process must not reach the CUDA driver (tests/test_zerogpu.py shows it with a
    CUDA build): it answers that there is no CUDA and no capturing stream itself, while a forked worker
    still asks torch."""
    import multiprocessing

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as `spaces` patches it there
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: asked.append(1) or True)
    hw._no_cuda_in_the_main_process()
    assert torch.cuda.is_available() is False
    assert torch.cuda.is_current_stream_capturing() is False and asked == []
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_capturing) is True  # the original, in the fork


def _capturing() -> bool:
    return torch.cuda.is_current_stream_capturing()
