"""Batching across requests: generation requests for one base that arrive together share one batch.

Requests wait in a queue; a worker thread per base collects them for a short window (or until the
batch is full), then runs them as one mixed-adapter `generate`: one forward per decoding step for the
whole batch, whatever adapters its rows use. Each row streams its own text and ends on its own, and its
`on_end` is called as soon as it ends, not when the batch does. A cancelled row ends at the next
decoding step (a waiting one at once, with `withdraw`), and a batch whose rows have all ended stops.
Requests that arrive while a batch runs form the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..catalog import Base
from ..generation import Row, finish, generate_rows
from ..inference import RepetitionGuard, stop_token_ids
from .errors import Busy

log = logging.getLogger("adapter_core.serve")


@dataclass
class Pending:
    row: Row
    on_end: Callable[[BaseException | None], None]
    arrived: float = field(default_factory=time.monotonic)
    ended: bool = False


class Batcher:
    def __init__(self, base: Base, max_batch: int = 32, window_s: float = 0.01, max_waiting: int = 256):
        self.base, self.max_batch, self.window_s, self.max_waiting = base, max_batch, window_s, max_waiting
        self.stop_ids = stop_token_ids(base.tokenizer, base.model)
        self._waiting: list[Pending] = []
        self._cv = threading.Condition()
        # How many batches started, their rows, and the rows that ended cancelled: for tests and benchmarks.
        self.batches = self.rows = self.cancelled = 0
        self._closed = False
        threading.Thread(target=self._loop, name=f"batcher-{base.name}", daemon=True).start()

    def submit(self, row: Row, on_end: Callable[[BaseException | None], None]) -> None:
        """Queue `row`; `on_end(error)` is called from the worker once it is finished (error None)."""
        self.submit_many([(row, on_end)])

    def submit_many(self, rows: list[tuple[Row, Callable[[BaseException | None], None]]]) -> None:
        """Queue rows together, so that they land in the same batch (when it has room)."""
        with self._cv:
            if len(self._waiting) + len(rows) > self.max_waiting:
                raise Busy(f"The server is busy: {len(self._waiting)} requests are waiting. Retry in a moment.")
            pending = [Pending(row, on_end) for row, on_end in rows]
            for p in pending:
                p.row.on_finish = lambda row, p=p: self._end(p, None)
            self._waiting += pending
            self._cv.notify()

    def withdraw(self, row: Row) -> bool:
        """End a cancelled row that still waits for its batch, now; False when it is not waiting."""
        with self._cv:
            pending = next((p for p in self._waiting if p.row is row), None)
            if pending is None:
                return False
            self._waiting.remove(pending)
        finish(row, "cancelled")  # its on_finish ends it
        return True

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        """End the worker once the queue is empty (its base is no longer resident)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _next_batch(self) -> list[Pending]:
        with self._cv:
            while not self._waiting:
                if self._closed:
                    return []
                self._cv.wait()
            deadline = self._waiting[0].arrived + self.window_s
            while len(self._waiting) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)
            batch = self._waiting[: self.max_batch]
            del self._waiting[: len(batch)]
            return batch

    def _loop(self) -> None:
        while batch := self._next_batch():
            error = None
            try:
                guard = RepetitionGuard()
                # Counted first: a row's caller hears of its end (and may look) before the batch ends.
                self.batches, self.rows = self.batches + 1, self.rows + len(batch)
                generate_rows(self.base.model, self.base.tokenizer, [p.row for p in batch], self.stop_ids, guard)
            except Exception as e:  # one failed batch fails its requests, never the worker
                log.exception("A generation batch failed")
                error = e
            for pending in batch:  # rows that ended on their way have been told already
                self._end(pending, error)

    def _end(self, pending: Pending, error: BaseException | None) -> None:
        with self._cv:
            if pending.ended:
                return
            pending.ended = True
            self.cancelled += pending.row.finish_reason == "cancelled"
        try:
            pending.on_end(error)
        except Exception:
            log.exception("A request's end callback failed")
