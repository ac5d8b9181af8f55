"""What one client address may upload to Gradio's cache: files wait there (up to an hour, `ui.CACHE_CLEANUP`)
before any handler sees them, so the budget holds at the door, before a byte is stored.

Per address: at most `UPLOADS_AT_ONCE` uploads in flight, and `Policy.max_upload_bytes_per_address` within
the cache's lifetime, charged at the declared size (a body without one is charged the largest file Gradio
takes). Signed-in or not does not matter here: the request carries no identity yet.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque

UPLOADS_AT_ONCE = 2
WINDOW_S = 3600.0  # as long as Gradio keeps an uploaded file


class UploadBudget:
    def __init__(self, max_bytes: int, largest_file: int, window_s: float = WINDOW_S, clock=time.monotonic):
        self.max_bytes, self.largest_file, self.window_s, self.clock = max_bytes, largest_file, window_s, clock
        self.in_flight: Counter = Counter()
        self._charged: defaultdict[str, deque] = defaultdict(deque)  # address -> (time, bytes), oldest first

    def refusal(self, address: str, declared: int | None) -> str | None:
        """Why `address` may not upload now, if it may not; else charge it and count it in flight (the
        caller calls `done` when the upload ends)."""
        if self.in_flight[address] >= UPLOADS_AT_ONCE:
            return f"Your network has {UPLOADS_AT_ONCE} uploads in progress here; wait for one to finish."
        size = declared if declared is not None else self.largest_file
        charged = self._recent(address)
        if sum(b for _, b in charged) + size > self.max_bytes:
            return (
                f"Your network has uploaded {self.max_bytes // 2**20} MB to this studio within the hour, its limit; "
                "try again later."
            )
        charged.append((self.clock(), size))
        self.in_flight[address] += 1
        return None

    def done(self, address: str) -> None:
        self.in_flight[address] -= 1
        if self.in_flight[address] <= 0:
            del self.in_flight[address]

    def _recent(self, address: str) -> deque:
        charged, since = self._charged[address], self.clock() - self.window_s
        while charged and charged[0][0] < since:
            charged.popleft()
        if len(self._charged) > 10_000:  # addresses seen once long ago: forget them
            for stale in [a for a, d in self._charged.items() if not d and a != address]:
                del self._charged[stale]
        return charged
