"""Which files of a Hub dataset hold which split of which configuration, decided from the file list and
the dataset card alone, as `datasets` decides it: the card's `configs:` (each with its `data_files`),
else the split names in file and folder names (`train`, `validation`/`valid`/`dev`/`val`, `test`/`eval`),
else every data file is `train`. Pure functions: nothing here reads the network or the disk.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from datasets.data_files import (
    DEFAULT_PATTERNS_SPLIT_IN_DIR_NAME,
    DEFAULT_PATTERNS_SPLIT_IN_FILENAME,
    sanitize_patterns,
)

from .data import DataError

# Data files `datasets` reads without running code, by suffix -> its packaged builder.
BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json"}
VALIDATION_SPLITS = ("validation", "valid", "dev", "val")
DEFAULT_CONFIG = "default"
MAX_PATTERNS = 100  # data_files patterns of one configuration: real cards have a few
MAX_PATTERN_CHARS = 500


def suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def is_data_file(path: str) -> bool:
    parts = path.split("/")
    return suffix(path) in BUILDERS and not any(p.startswith((".", "__")) for p in parts)


def config_names(card: dict[str, Any]) -> list[str]:
    """The configurations the card declares (none: the one implicit `default`)."""
    configs = card.get("configs")
    if not isinstance(configs, list):
        return [DEFAULT_CONFIG]
    names = [str(c.get("config_name", DEFAULT_CONFIG)) for c in configs if isinstance(c, dict)]
    return names or [DEFAULT_CONFIG]


def default_config(card: dict[str, Any], repo_id: str) -> str:
    """The configuration used when none is asked for: the card's `default: true` one, one named
    `default`, or the only one; with several and no default, the user picks."""
    configs = [c for c in card.get("configs") or [] if isinstance(c, dict)]
    marked = [str(c.get("config_name", DEFAULT_CONFIG)) for c in configs if c.get("default") is True]
    names = config_names(card)
    if marked:
        return marked[0]
    if DEFAULT_CONFIG in names or len(names) == 1:
        return DEFAULT_CONFIG if DEFAULT_CONFIG in names else names[0]
    raise DataError(
        f"{repo_id} has {len(names)} configurations ({', '.join(names[:12])}); pick one (--data-config in the "
        "CLI, the Configuration box in the studio)."
    )


def split_files(files: list[str], card: dict[str, Any], config: str, repo_id: str) -> dict[str, list[str]]:
    """Split name -> the data files of `config` that hold it, in file-name order."""
    names = config_names(card)
    if config not in names:
        raise DataError(f"{repo_id} has no configuration {config!r}; it has {', '.join(names[:12])}.")
    data = sorted(f for f in files if is_data_file(f))
    declared = next(
        (
            c
            for c in card.get("configs") or []
            if isinstance(c, dict) and c.get("config_name", DEFAULT_CONFIG) == config
        ),
        None,
    )
    if declared is not None and declared.get("data_files"):
        try:
            patterns = sanitize_patterns(declared["data_files"])
        except (ValueError, TypeError):
            raise DataError(
                f"{repo_id}: the card's data_files of {config!r} are not in a form datasets reads."
            ) from None
        _check_patterns(patterns, repo_id, config)
        if declared.get("data_dir"):
            prefix = str(declared["data_dir"]).strip("/") + "/"
            patterns = {s: [prefix + p for p in ps] for s, ps in patterns.items()}
        found = {str(s): _matching(data, ps) for s, ps in patterns.items()}
    else:
        found = _inferred(data)
    found = {s: fs for s, fs in found.items() if fs}
    if not found:
        kinds = ", ".join(sorted(BUILDERS))
        raise DataError(
            f"{repo_id} ({config}) has no data file that can be read without running code ({kinds}). "
            "A dataset that needs a loading script cannot be used; its parquet conversion may work: "
            f"hf://datasets/{repo_id}@refs/convert/parquet."
        )
    return found


def _check_patterns(patterns: dict[str, list[str]], repo_id: str, config: str) -> None:
    """A card is a stranger's text: its patterns are bounded before any is matched."""
    count = sum(len(ps) for ps in patterns.values())
    if count > MAX_PATTERNS:
        raise DataError(
            f"{repo_id}: the card lists {count:,} data_files patterns for {config!r}; this studio reads at most "
            f"{MAX_PATTERNS}."
        )
    longest = max((len(str(p)) for ps in patterns.values() for p in ps), default=0)
    if longest > MAX_PATTERN_CHARS:
        raise DataError(
            f"{repo_id}: a data_files pattern of {config!r} is {longest:,} characters; this studio reads at most "
            f"{MAX_PATTERN_CHARS}."
        )


def validation_split(splits: dict[str, list[str]], train: str) -> str | None:
    """The dataset's own validation split, if it has one besides the split trained on."""
    return next((s for s in VALIDATION_SPLITS if s in splits and s != train), None)


def _inferred(files: list[str]) -> dict[str, list[str]]:
    """Splits from file names, then folder names, as `datasets` infers them; else all is train."""
    for table in (DEFAULT_PATTERNS_SPLIT_IN_FILENAME, DEFAULT_PATTERNS_SPLIT_IN_DIR_NAME):
        found = {str(split): _matching(files, patterns) for split, patterns in table.items()}
        if any(found.values()):
            return found
    return {"train": files}


def _matching(files: list[str], patterns: list[str]) -> list[str]:
    globs = [_glob(p) for p in patterns]
    return [f for f in files if any(g.match(f) for g in globs)]


class Glob:
    """A data_files glob as fsspec reads it (`*` stays within a folder, `**` crosses folders, `**/` is any
    folders or none, `?` one character, `[...]` a class), matched in time linear in the name: the pattern
    is run as a set of positions (a bitmask), never by backtracking, since a card's patterns are a
    stranger's and a regex of many stars takes exponential time on a long name."""

    def __init__(self, pattern: str):
        pattern = pattern.removeprefix("./")
        self.tokens: list[tuple[str, str]] = []  # (kind, payload): lit, any, class, star, dstar, folders
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                self.tokens += [("folders", ""), ("dstar", ""), ("lit", "/")]  # entered, or skipped whole
                i += 3
                continue
            c = pattern[i]
            if pattern.startswith("**", i):
                self.tokens.append(("dstar", ""))
                i += 1
            elif c == "*":
                self.tokens.append(("star", ""))
            elif c == "?":
                self.tokens.append(("any", ""))
            elif c == "[" and "]" in pattern[i + 2 :]:
                end = pattern.index("]", i + 2)
                members = pattern[i + 1 : end].replace("\\", "\\\\")
                self.tokens.append(("class", "[" + ("^" + members[1:] if members.startswith("!") else members) + "]"))
                i = end
            else:
                self.tokens.append(("lit", c))
            i += 1
        bits = lambda kinds: sum(1 << i for i, (k, _) in enumerate(self.tokens) if k in kinds)  # noqa: E731
        self._skip1, self._skip3 = bits(("star", "dstar", "folders")), bits(("folders",))
        self._masks: dict[str, tuple[int, int]] = {}

    def match(self, name: str) -> bool:
        states = self._closure(1)
        for ch in name:
            advance, stay = self._masks.get(ch) or self._mask(ch)
            states = self._closure(((states & advance) << 1) | (states & stay))
            if not states:
                return False
        return bool(states >> len(self.tokens) & 1)

    def _closure(self, states: int) -> int:
        """Add the positions reached by matching nothing: past a star, or past a whole `**/`."""
        while True:
            more = states | ((states & self._skip1) << 1) | ((states & self._skip3) << 3)
            if more == states:
                return states
            states = more

    def _mask(self, ch: str) -> tuple[int, int]:
        """The positions that consume `ch` and move on, and those that consume it and stay."""
        advance = stay = 0
        for i, (kind, payload) in enumerate(self.tokens):
            one = kind == "lit" and payload == ch or kind == "any" and ch != "/"
            if one or kind == "class" and re.fullmatch(payload, ch):
                advance |= 1 << i
            elif kind == "dstar" or (kind == "star" and ch != "/"):
                stay |= 1 << i
        if len(self._masks) < 4096:
            self._masks[ch] = (advance, stay)
        return advance, stay


@lru_cache(maxsize=256)
def _glob(pattern: str) -> Glob:
    return Glob(pattern)
