"""An answer on its way (`Answer`), and the same read piece by piece from another thread (`Stream`),
as the studio's pages do."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass

from ..catalog import Base
from ..generation import Row
from ..routing import Route


@dataclass
class Answer:
    """A chat on its way: `row` generates on a batcher, or `text` is the fixed hand-off message."""

    model: str
    prompt_tokens: int
    base: Base | None = None
    row: Row | None = None
    text: str | None = None
    route: Route | None = None
    router: str | None = None
    owner: str | None = None


class Stream:
    """An answer read piece by piece from another thread; after the last piece, `answer.row` holds the
    whole row (its `finish_reason`, and `repeated` when the repetition guard cut a loop)."""

    def __init__(self, answer: Answer):
        self.answer = answer
        self._pieces: queue.Queue = queue.Queue()
        self._error: BaseException | None = None

    def put(self, piece: str) -> None:
        self._pieces.put(piece)

    def end(self, error: BaseException | None) -> None:
        self._error = error
        self._pieces.put(None)

    def __iter__(self) -> Iterator[str]:
        while (piece := self._pieces.get()) is not None:
            yield piece
        if self._error is not None:
            raise self._error

    def text(self) -> str:
        return "".join(self)

    @property
    def repeated(self) -> bool:
        return bool(self.answer and self.answer.row and self.answer.row.repeated)
