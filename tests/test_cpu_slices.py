"""A sliced run takes no training step in its own process (on a ZeroGPU Space that would start CUDA there:
adapter_core/engine/cpu_slices.py). Its CPU slices run in a process of their own and reach the same
weights as slices run here."""

import os

import pytest
import torch
from helpers import quick, wait_for
from safetensors.torch import load_file

from adapter_core.engine import cpu_slices
from adapter_core.engine.cpu_slices import CpuSliceError, CpuSliceProcess
from adapter_core.engine.slices import run_slice
from adapter_core.engine.train import train


@pytest.fixture
def no_training_here(monkeypatch):
    """A backward pass or an optimizer step in this process raises, as on a ZeroGPU Space's main process."""
    me = os.getpid()

    def guard(original):
        def guarded(*args, **kwargs):
            assert os.getpid() != me, "a training step ran in the run's own process"
            return original(*args, **kwargs)

        return guarded

    monkeypatch.setattr(torch.autograd, "backward", guard(torch.autograd.backward))
    check = torch.optim.Optimizer._accelerator_graph_capture_health_check
    monkeypatch.setattr(torch.optim.Optimizer, "_accelerator_graph_capture_health_check", guard(check))


def weights(result) -> dict[str, torch.Tensor]:
    return load_file(result.adapter_dir / "adapter_model.safetensors")


def test_a_sliced_run_trains_only_in_its_cpu_process_and_ends_as_in_process_slices(tmp_path, no_training_here):
    config = quick(max_steps=12, eval_every=6)  # over 10 steps: an unsliced run would time passes first
    process = CpuSliceProcess()
    try:
        elsewhere = train(config, tmp_path / "elsewhere", lease=process.run)
        assert elsewhere.steps == 12 and process._proc.pid != os.getpid()
    finally:
        process._close()
    assert process._proc is None
    with pytest.raises(AssertionError, match="own process"):  # the guard is real: slices here train here
        train(config, tmp_path / "here", lease=run_slice)


def test_slices_in_the_process_equal_slices_here(tmp_path):
    config = quick(max_steps=4, eval_every=2)
    here = train(config, tmp_path / "here", lease=run_slice)
    try:
        elsewhere = train(config, tmp_path / "elsewhere", lease=cpu_slices.run_on_cpu)
    finally:
        cpu_slices._PROCESS._close()
    a, b = weights(here), weights(elsewhere)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert here.metrics["accuracy"] == elsewhere.metrics["accuracy"]


def test_a_failed_slice_says_why_and_the_process_serves_the_next():
    process = CpuSliceProcess()
    try:
        with pytest.raises(CpuSliceError, match="training on the CPU failed"):
            process.run(object())  # no spec: run_slice fails in the process, which keeps serving
        pid = process._proc.pid
        with pytest.raises(CpuSliceError, match="training on the CPU failed"):
            process.run(object())
        assert process._proc.pid == pid, "one process serves every slice"
        process._proc.kill()
        process._proc.wait()
        with pytest.raises(CpuSliceError, match="training on the CPU failed"):
            process.run(object())  # a process that ended is started again
        assert process._proc.pid != pid
    finally:
        process._close()


class DiesWhenRead:
    """A spec whose unpickling ends the process that reads it: a CPU process killed mid-slice."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_process_that_dies_mid_slice_pauses_the_run_in_words():
    process = CpuSliceProcess()
    try:
        with pytest.raises(CpuSliceError, match="stopped; resume the run from Past runs"):
            process.run(DiesWhenRead())
        assert process._proc is None
    finally:
        process._close()


def test_an_idle_process_ends_and_the_next_slice_starts_another():
    process = CpuSliceProcess(idle_seconds=1.0)
    try:
        with pytest.raises(CpuSliceError):
            process.run(object())
        first = process._proc
        wait_for(lambda: process._proc is None, timeout=30, what="the idle process to end")
        assert first.poll() is not None
        with pytest.raises(CpuSliceError, match="training on the CPU failed"):
            process.run(object())
        assert process._proc is not None and process._proc.pid != first.pid
    finally:
        process._close()
