"""A sweep's own record, kept beside its runs: `<runs root>/sweeps/<id>.json`, written atomically.

The record says which runs form the sweep (their ids, in grid order), whose it is, what it ranks by,
and, once its last run has ended, which run was best and where the best went. It is what lets a
restarted process finish a sweep that an earlier one started (see `sweep_executor`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..atomic import write_json_atomic
from ..errors import AdapterError
from .runs import visible

RUNNING, ENDED = "running", "ended"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,120}$")
_slug = re.compile(r"[^A-Za-z0-9_-]+")
log = logging.getLogger("adapter_studio")


@dataclass
class SweepRecord:
    id: str
    name: str  # the grid's name; runs are `<name>-r<r>-lr<lr>...`
    owner: str | None
    task: str
    metric: str  # the validation metric the runs are ranked by (rank_key's first)
    expected: int  # runs in the grid; the best is chosen once all of them have ended
    run_ids: list[str] = field(default_factory=list)  # = the jobs' ids, in grid order
    state: str = RUNNING  # running | ended
    stopped: bool = False  # a stop request ended it before its last run
    stop_on_failure: bool = False  # a failed run cancels the rest (the CLI's sweep)
    best: str | None = None  # the best run's id, once chosen
    best_name: str | None = None  # and its name
    published: str | None = None  # where the publish step put the best (a library name, a folder)
    error: str | None = None  # why publishing the best failed, in words
    boot: str | None = None  # the process that started it
    created: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.state == ENDED


def new_sweep_id(name: str) -> str:
    return f"{_slug.sub('-', name).strip('-')[:40] or 'sweep'}-sweep-{secrets.token_hex(4)}"


class SweepStore:
    def __init__(self, runs_root: Path):
        self.root = Path(runs_root) / "sweeps"

    def save(self, record: SweepRecord) -> None:
        write_json_atomic(self.root / f"{record.id}.json", asdict(record))

    def load(self, sweep_id: str) -> SweepRecord | None:
        """The record `sweep_id`, or None when there is none (or it cannot be read)."""
        if not isinstance(sweep_id, str) or not _ID.match(sweep_id):
            return None
        return _parse(self.root / f"{sweep_id}.json")

    def all(self) -> list[SweepRecord]:
        """Every readable record, oldest first; a damaged one is left out (and logged)."""
        try:
            paths = sorted(self.root.glob("*.json"))
        except OSError:
            log.exception("Cannot list the sweeps")
            return []
        records = []
        for path in paths:
            record = _parse(path)
            if record is None:
                log.warning("Skipping sweep record %s: it cannot be read", path.name)
            else:
                records.append(record)
        return sorted(records, key=lambda r: r.created)

    def get(self, sweep_id: str, owner: str | None = None) -> SweepRecord:
        """The record, if `owner` may see it; otherwise the same error as for a sweep that does not exist."""
        record = self.load(sweep_id)
        if record is None or not visible(record.owner, owner):
            raise AdapterError(f"No sweep {str(sweep_id)[:100]!r} for you.")
        return record


def _parse(path: Path) -> SweepRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(SweepRecord)}
    try:
        record = SweepRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # a required field is missing
        return None
    ok = isinstance(record.run_ids, list) and isinstance(record.expected, int) and record.id == path.stem
    return record if ok else None
