"""Slices handed from a run to its owner's requests: where a GPU is lent only to a visitor's own request
(ZeroGPU charges each lease to the quota of the visitor whose request takes it), a run's slices must run
inside that visitor's requests, never in the trainer's thread, which has no visitor.

The trainer thread offers each slice (`lease`) and waits. A request of the same owner (the Train tab's
timer, or an API client polling its run's status) takes it and runs it (`drive`), and hands the result
back. When no request takes a slice for `away_seconds`, the visitor has left: the run pauses at its
checkpoint, or, if its owner chose so before it started, the slice runs on the CPU (as it does when the
owner's lease is refused), in a process of its own (`cpu_slices`: never in the studio's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .cpu_slices import CpuSliceError, run_on_cpu
from .sliced_loop import Paused
from .slices import SliceResult, SliceSpec

AWAY_SECONDS = 30.0  # no request of the owner for this long: they closed the page
AWAY = (
    "no page or API client of yours asked for its progress for {seconds:.0f} s, and the GPU is lent only "
    "to your own requests. Resume it from Past runs when you are back."
)
FAILED = "the GPU worker failed (what went wrong is in the studio's log). Resume it from Past runs to try again."
log = logging.getLogger("adapter_studio")


@dataclass
class _Offer:
    owner: str | None
    spec: SliceSpec
    taken: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: SliceResult | None = None
    error: BaseException | None = None


class SliceBroker:
    def __init__(self, away_seconds: float | None = None):
        self.away_seconds = AWAY_SECONDS if away_seconds is None else away_seconds
        self._offers: list[_Offer] = []
        self._cond = threading.Condition()

    def lease(
        self, owner: str | None, spec: SliceSpec, should_stop: Callable[[], bool], cpu_when_away: bool = False
    ) -> SliceResult:
        """Run `spec` in one of `owner`'s requests (the trainer thread blocks meanwhile). A stop request
        reaches a running slice through its stop file; one not yet taken is withdrawn, with no steps."""
        offer = _Offer(owner, spec)
        with self._cond:
            self._offers.append(offer)
            self._cond.notify_all()
        since = time.monotonic()
        while not offer.done.wait(0.1):
            if offer.taken:
                if should_stop() and spec.stop_file:
                    Path(spec.stop_file).touch()
                continue
            withdrawn = should_stop() or time.monotonic() - since > self.away_seconds
            if withdrawn and self._withdraw(offer):
                if should_stop():
                    return _nothing(spec)
                if cpu_when_away:
                    return _on_cpu(spec, should_stop)
                raise Paused(AWAY.format(seconds=self.away_seconds))
        if offer.error is not None:
            if cpu_when_away:  # out of quota, or a failed lease: the owner chose the CPU over a pause
                return _on_cpu(spec, should_stop)
            raise offer.error if isinstance(offer.error, Paused) else Paused(FAILED)
        assert offer.result is not None
        return offer.result

    def waiting(self, owner: str | None) -> bool:
        """Whether a run of `owner`'s waits for a request to run its next slice."""
        with self._cond:
            return any(o.owner == owner and not o.taken for o in self._offers)

    def drive(self, owner: str | None, run: Callable[[SliceSpec], SliceResult], seconds: float) -> int:
        """Run `owner`'s offered slices with `run`, one after another, for up to `seconds` (a request's share
        of work); the number run. Each slice's lease is taken by `run`, inside the caller's request."""
        end, count = time.monotonic() + seconds, 0
        while (left := end - time.monotonic()) > 0:
            offer = self._take(owner, min(left, 1.0))
            if offer is None:
                return count
            try:
                offer.result = run(offer.spec)
            except Paused as e:  # refused, in words: handed to the trainer, which pauses the run with it
                log.info("A slice of %s's run did not run: %s", owner, e)
                offer.error = e
            except BaseException as e:  # its words may hold the server's paths: the log keeps them
                log.warning("A slice of %s's run failed in its GPU worker", owner, exc_info=True)
                offer.error = e
            finally:
                offer.done.set()
            count += 1
        return count

    def _take(self, owner: str | None, wait: float) -> _Offer | None:
        """The owner's next offered slice, waiting up to `wait` s for one (the trainer offers the next one
        moments after the last returns)."""
        with self._cond:
            end = time.monotonic() + wait
            while True:
                offer = next((o for o in self._offers if o.owner == owner and not o.taken), None)
                if offer is not None:
                    offer.taken = True
                    self._offers.remove(offer)
                    return offer
                if not self._cond.wait(max(0.0, end - time.monotonic())) and time.monotonic() >= end:
                    return None

    def _withdraw(self, offer: _Offer) -> bool:
        with self._cond:
            if offer.taken:
                return False
            self._offers.remove(offer)
            return True


def _on_cpu(spec: SliceSpec, should_stop: Callable[[], bool]) -> SliceResult:
    """`spec` run on the CPU, a stop request reaching it through its stop file, as it reaches a GPU slice."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            try:
                stop = should_stop()
            except Exception:  # noqa: BLE001 (an abort says so by raising: it stops the slice too)
                stop = True
            if stop and spec.stop_file:
                Path(spec.stop_file).touch()
                return

    threading.Thread(target=watch, daemon=True, name="cpu-slice-stop").start()
    try:
        return run_on_cpu(spec)
    except CpuSliceError as e:
        raise Paused(str(e)) from None
    finally:
        done.set()


def _nothing(spec: SliceSpec) -> SliceResult:
    """A slice that took no step (withdrawn for a stop): the state as it was."""
    return SliceResult(spec.weights, spec.optimizer, spec.scheduler, spec.rng, stopped=True)
