"""What a long command shows while it works, and how Ctrl-C stops it: a first press ends the run after
its current step (what it learned is kept), a second aborts."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from .errors import one_line


@contextlib.contextmanager
def ctrl_c_stops(message: str, say: Callable[[str], object] | None = None) -> Iterator[threading.Event]:
    """Within the block, the first Ctrl-C sets the yielded event (the run stops after its current step and
    keeps what it learned; `say`, stderr by default, gives `message`) and a second one aborts."""
    stop = threading.Event()

    def ask_stop(*_):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        (say or partial(print, file=sys.stderr, flush=True))(message)

    previous = signal.signal(signal.SIGINT, ask_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def metrics_line(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class TrainProgress:
    """One run's events on the terminal: messages and evaluations as lines, steps as a progress bar."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm, self.bar = tqdm, None

    def write(self, text: str) -> None:
        self.tqdm.write(text)

    def __call__(self, event: Any) -> None:
        if event.kind in ("status", "data") and event.message:
            self.write(event.message)
        elif event.kind == "warning":
            self.write(f"warning: {event.message}")
        elif event.kind == "step":
            if self.bar is None:
                self.bar = self.tqdm(total=event.total_steps, initial=event.step - 1, unit="step", dynamic_ncols=True)
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", ex_s=f"{event.examples_per_sec:.0f}")
        elif event.kind == "eval":
            self.write(f"step {event.step}: {metrics_line(event.metrics)}")
            for sample in (event.info or {}).get("samples", []):
                self.write(f"  {one_line(sample['prompt'])[:80]}\n    adapter: {one_line(sample['adapter'])}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep_line(event: Any) -> str | None:
    """What a sweep prints of one of its runs' events (warnings and evaluations), or None."""
    if event.kind == "warning":
        return f"  warning: {one_line(event.message)}"
    if event.kind == "eval":
        return f"  step {event.step}: {metrics_line(event.metrics)}"
    return None
