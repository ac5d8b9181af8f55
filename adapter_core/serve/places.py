"""Places in the serving queue, counted per caller: every answer in progress (waiting for its batch or
generating) holds one, whichever door it came through (the HTTP API, the studio's chat, route-many or
compare), and gives it back when its row ends, not when its batch does."""

from __future__ import annotations

import threading
from collections.abc import Hashable

from .errors import Busy


class Places:
    def __init__(self, limits):
        """`limits.max_in_flight_per_owner` is the cap (None: none), read at every call so that an
        operator (or a test) can change it on a running server."""
        self.limits, self._held, self._lock = limits, {}, threading.Lock()

    def take(self, caller: Hashable, n: int = 1) -> None:
        """Hold `n` places for `caller`, all or none; 429 (Busy) when they would pass the cap."""
        cap = self.limits.max_in_flight_per_owner
        with self._lock:
            held = self._held.get(caller, 0)
            if cap is not None and held + n > cap:
                raise Busy(_refusal(cap, held, n))
            if n:
                self._held[caller] = held + n

    def give_back(self, caller: Hashable, n: int = 1) -> None:
        with self._lock:
            left = self._held.get(caller, 0) - n
            if left > 0:
                self._held[caller] = left
            else:
                self._held.pop(caller, None)

    def held(self, caller: Hashable) -> int:
        return self._held.get(caller, 0)

    @property
    def total(self) -> int:
        """Places held by every caller together."""
        return sum(self._held.values())


def _refusal(cap: int, held: int, n: int) -> str:
    if cap == 0:
        return "This server takes no answers now. Retry later."
    limit = f"this server answers at most {cap} of one caller's messages at a time"
    if n > cap:
        return f"You asked for {n} answers at once, but {limit}. Send at most {cap}."
    if n == 1:
        return f"You have {held} answers in progress, and {limit}. Wait for one to finish."
    return f"You asked for {n} answers with {held} in progress, and {limit}. Send fewer, or wait."
