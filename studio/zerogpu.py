"""Training on ZeroGPU: each slice of a run is one `@spaces.GPU` call, leased inside a request of the run's
own visitor, so that it is charged to that visitor's GPU quota (a background thread has no visitor).

The Train tab's timer and the `/training_status` API both call `drive` on each tick: while the visitor
keeps a page open, or an API client keeps polling, their run goes on, slice after slice. Off ZeroGPU there
are no slices and `drive` does nothing.
"""

from __future__ import annotations

import logging

import gradio as gr

from adapter_core.engine import Paused, SliceBroker, SliceResult, SliceSpec, run_slice

from .hardware import gpu

DRIVE_SECONDS = 10.0  # a request's share of slices: the chart is redrawn after it
QUOTA_ADVICE = (
    "Nothing is lost: sign in with Hugging Face for a larger daily GPU quota, wait until your quota renews, or "
    "resume it on the CPU (tick “Go on on the CPU” on the Train tab, then Past runs → Resume)."
)
log = logging.getLogger("adapter_studio")


def lease_seconds(spec: SliceSpec) -> int:
    """What a slice asks ZeroGPU for: its steps and evaluation at the measured pace, with headroom."""
    return int(spec.lease)


# One GPU call per slice: the state goes in as arguments and comes back as the result (a forked worker).
gpu_slice = gpu(duration=lease_seconds)(run_slice)


def run_leased(spec: SliceSpec) -> SliceResult:
    """One slice in a GPU lease; a refused or failed lease pauses the run, in plain words."""
    try:
        return gpu_slice(spec)
    except gr.Error as e:
        message = str(getattr(e, "message", e)).strip()
        if "quota" in f"{getattr(e, 'title', '')} {message}".lower():
            raise Paused(f"ZeroGPU refused more GPU time ({message}). {QUOTA_ADVICE}") from None
        raise Paused(f"the GPU lease failed ({message}). Resume it from Past runs.") from None


def drive(broker: SliceBroker | None, owner: str | None) -> int:
    """Run the caller's waiting slices inside this request, for up to DRIVE_SECONDS; how many ran."""
    if broker is None or not broker.waiting(owner):
        return 0
    return broker.drive(owner, run_leased, DRIVE_SECONDS)
