"""The Hugging Face Hub: pull adapters into the local Hugging Face cache, checked like uploads, and push
them with their model card.

A pull downloads only `adapter_config.json`, `adapter_model.safetensors`, `README.md` and `curve.png`
(at the repo's root, or one folder down for a pack of adapters), after the Hub has told their sizes:
each file against its cap, and, when the caller gives a `Room`, the total and the number of adapters
against it, before anything is downloaded. Then every adapter is checked as an upload is: the config against the schema, the weights' header against
the config, every file against a size cap. Nothing is unpickled; nothing else is fetched. With
`HF_HUB_OFFLINE=1` (read at call time) only the cache is used, and a pull the cache cannot serve fails at
once with a plain message, as does one that cannot reach the Hub.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from .config import AdapterConfig
from .errors import AdapterError
from .schema import (
    CARD_FILE,
    CONFIG_FILE,
    CURVE_PNG,
    MAX_CONFIG_BYTES,
    STATS_FILE,
    WEIGHTS_FILE,
    check_weights_match,
    read_meta_file,
    read_safetensors_header,
    read_stats,
)

HUB_PREFIX = "hf://"
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATS_FILE, CARD_FILE, CURVE_PNG)
MAX_FILE_BYTES = {CONFIG_FILE: MAX_CONFIG_BYTES, CARD_FILE: 2**20, CURVE_PNG: 5 * 2**20}
DEFAULT_MAX_WEIGHTS = 2 * 2**30  # local mode's cap on one weights file, as for uploads
MAX_PACK_ADAPTERS = 64
_REPO = r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}"
_REF = re.compile(rf"^(?P<repo>{_REPO})(?:/(?P<sub>[\w.-]{{1,96}}))?(?:@(?P<rev>[\w./-]{{1,128}}))?$")


@dataclass(frozen=True)
class Room:
    """What a pull may bring: at most `adapters` adapter folders of `bytes` in all (what the Hub declares)."""

    adapters: int
    bytes: int


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    subfolder: str | None = None  # one adapter of a pack
    revision: str | None = None

    def __str__(self) -> str:
        return (
            self.repo_id
            + (f"/{self.subfolder}" if self.subfolder else "")
            + (f"@{self.revision}" if self.revision else "")
        )


def parse_ref(source: Any) -> HubRef | None:
    """`hf://owner/repo[/adapter][@revision]` is always a Hub reference; `owner/repo[...]` only when no local
    path of that name exists (a folder wins). None for anything else."""
    if isinstance(source, PurePath) and str(source).startswith("hf:/"):
        source = HUB_PREFIX + str(source)[4:]  # Path("hf://a/b") collapses the double slash
    if not isinstance(source, str):
        return None
    text = source.strip()
    explicit = text.startswith(HUB_PREFIX)
    if explicit:
        text = text[len(HUB_PREFIX) :]
    elif Path(source).expanduser().exists() or text.startswith((".", "/", "~")):
        return None
    match = _REF.match(text)
    if match is None or ".." in text:
        if explicit:
            raise AdapterError(
                f"{source!r} is not a Hub reference; write hf://owner/repo (or hf://owner/repo@revision)."
            )
        return None
    return HubRef(match["repo"], match["sub"], match["rev"])


def resolve_source(source: Any) -> Path:
    """A local adapter folder for `source`: a Hub reference is pulled (one adapter), anything else is a path."""
    ref = parse_ref(source)
    if ref is None:
        return Path(source)
    try:
        folders = pull(ref)
    except AdapterError as e:
        if str(source).startswith(HUB_PREFIX):
            raise
        raise AdapterError(f"{source!r} is no adapter folder here, so it was read as a Hub repository: {e}") from None
    if len(folders) != 1:
        raise AdapterError(
            f"{ref} holds {len(folders)} adapters (a pack); name one: hf://{ref.repo_id}/<adapter>, e.g. "
            f"hf://{ref.repo_id}/{folders[0].name}."
        )
    return folders[0]


def offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """The Hugging Face cache, from the environment at call time (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def pull(
    ref: HubRef | str,
    token: str | bool | None = None,
    cache: str | Path | None = None,
    limits: Any = None,
    room: Room | None = None,
) -> list[Path]:
    """Download (or find in the cache) the adapters of a Hub repo and check them; their folders in the
    cache's snapshot (the root for one adapter, one folder each for a pack). `limits`: a studio Policy
    (bottleneck, labels and file-size caps), or None for the local caps. `token`: None uses the machine's
    login (HF_TOKEN, `hf auth login`); False sends none. `room`: refuse a repo bigger than that before
    downloading anything."""
    return _pull(ref, token, cache, limits, room)[1]


def _pull(
    ref: HubRef | str,
    token: str | bool | None = None,
    cache: str | Path | None = None,
    limits: Any = None,
    room: Room | None = None,
):
    ref = hub_ref(ref)
    snapshot = _download(ref, token, Path(cache) if cache else cache_dir(), limits, room)
    root = snapshot / ref.subfolder if ref.subfolder else snapshot
    folders = adapter_folders(root)
    if not folders:
        raise AdapterError(f"{ref} holds no adapter: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    for folder in folders:
        check_adapter_folder(folder, limits, label=f"{ref}" + (f"/{folder.name}" if folder != root else ""))
    return root, folders


def pull_named(
    ref: HubRef | str,
    token: str | bool | None = None,
    cache: str | Path | None = None,
    limits: Any = None,
    room: Room | None = None,
) -> list[tuple[str, Path]]:
    """The adapters of a Hub repo (never a local path), one or a pack's, each checked and with the name it
    goes by: a pack's folder names, else the subfolder's or the repository's name."""
    ref = hub_ref(ref)
    root, folders = _pull(ref, token, cache, limits, room)
    if folders == [root]:
        return [((ref.subfolder or ref.repo_id).rstrip("/").rsplit("/", 1)[-1], root)]
    return [(folder.name, folder) for folder in folders]


def hub_ref(ref: HubRef | str) -> HubRef:
    """`ref` as a Hub reference, with or without its hf:// prefix (`parse_ref` refuses what is none)."""
    return ref if isinstance(ref, HubRef) else parse_ref(HUB_PREFIX + str(ref).strip().removeprefix(HUB_PREFIX))


def pulled_library(ref: HubRef | str, token: str | bool | None = None) -> Path:
    """A pack pulled from the Hub, as a library folder (one folder per adapter) in the cache."""
    root, folders = _pull(ref, token)
    if folders == [root]:
        raise AdapterError(
            f"{ref} is one adapter, not a pack: serve a folder that holds it (python -m adapter_core pull "
            f"{str(ref).removeprefix(HUB_PREFIX)} --out LIBRARY/NAME, then serve --library LIBRARY)."
        )
    return root


def adapter_folders(root: Path) -> list[Path]:
    """The adapter at `root`, or the adapters one folder down (a pack)."""
    if (root / CONFIG_FILE).is_file():
        return [root]
    subs = sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()) if root.is_dir() else []
    return subs[:MAX_PACK_ADAPTERS]


def check_adapter_folder(folder: Path, limits: Any = None, label: str | None = None) -> dict[str, Any]:
    """An adapter from a stranger, checked as an upload is; returns its metadata."""

    label = label or folder.name
    max_weights = getattr(limits, "max_member_bytes", DEFAULT_MAX_WEIGHTS)
    for name in ADAPTER_FILES:
        path = folder / name
        if path.exists():
            cap = MAX_FILE_BYTES.get(name, max_weights)
            if path.stat().st_size > cap:
                raise AdapterError(f"{label}: {name} is over {cap / 2**20:,.1f} MB; that is the limit.")
        elif name in (CONFIG_FILE, WEIGHTS_FILE):
            raise AdapterError(f"{label} is not an adapter: {name} is missing.")
    meta = read_meta_file(folder / CONFIG_FILE, source=f"{label}/{CONFIG_FILE}")
    if limits is not None:
        r = AdapterConfig.from_dict(meta["config"]).bottleneck_for(meta["base"]["hidden_size"])
        if r > limits.max_bottleneck:
            raise AdapterError(
                f"{label}: its bottleneck is {r:,}; this studio accepts at most {limits.max_bottleneck:,}."
            )
        n = len(meta.get("labels") or [])
        if n > limits.max_labels:
            raise AdapterError(f"{label}: it has {n:,} labels; this studio accepts at most {limits.max_labels:,}.")
    try:
        check_weights_match(meta, read_safetensors_header(folder / WEIGHTS_FILE))
        if (folder / STATS_FILE).is_file() and meta["task"] == "classification":
            read_stats(folder / STATS_FILE, meta["base"]["hidden_size"], len(meta["labels"]))
    except AdapterError as e:
        raise AdapterError(f"{label}: {e}") from None
    return meta


def _patterns(ref: HubRef) -> list[str]:
    if ref.subfolder:
        return [f"{glob.escape(ref.subfolder)}/{f}" for f in ADAPTER_FILES]
    return [*ADAPTER_FILES, *(f"*/{f}" for f in ADAPTER_FILES)]


def _download(ref: HubRef, token: str | bool | None, cache: Path, limits: Any, room: Room | None = None) -> Path:
    """The repo's snapshot folder with the allowed files, sizes checked before any download."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import DryRunError

    kwargs = dict(repo_id=ref.repo_id, revision=ref.revision, cache_dir=str(cache), token=token)
    try:
        if offline():
            return Path(snapshot_download(**kwargs, allow_patterns=_patterns(ref), local_files_only=True))
        try:
            infos = snapshot_download(**kwargs, allow_patterns=_patterns(ref), dry_run=True)
        except DryRunError as e:  # the Hub cannot be reached or is down: the cache may serve it
            if is_refusal(e.__cause__):
                raise e.__cause__ from None
            return Path(snapshot_download(**kwargs, allow_patterns=_patterns(ref), local_files_only=True))
        wanted = [i for i in infos if i.filename.count("/") <= 1]
        _check_sizes(ref, wanted, limits, room)
        names = [glob.escape(i.filename) for i in wanted] or [CONFIG_FILE]
        return Path(snapshot_download(**kwargs, allow_patterns=names))
    except AdapterError:
        raise
    except Exception as e:
        raise _plain(ref, e) from None


def _check_sizes(ref: HubRef, infos: list, limits: Any, room: Room | None = None) -> None:
    max_weights = getattr(limits, "max_member_bytes", DEFAULT_MAX_WEIGHTS)
    folders = {i.filename.rpartition("/")[0] for i in infos}
    if len(folders) > MAX_PACK_ADAPTERS:
        raise AdapterError(f"{ref} holds {len(folders)} adapter folders; a pull takes at most {MAX_PACK_ADAPTERS}.")
    if room is not None:
        adapters = {i.filename.rpartition("/")[0] for i in infos if i.filename.rpartition("/")[2] == CONFIG_FILE}
        _check_room(ref, infos, len(adapters), room)
    for info in infos:
        name = info.filename.rpartition("/")[2]
        cap = MAX_FILE_BYTES.get(name, max_weights)
        if (info.file_size or 0) > cap:
            raise AdapterError(
                f"{ref}: {info.filename} is {info.file_size / 2**20:,.1f} MB; the limit is {cap / 2**20:,.1f} MB."
            )


def _check_room(ref: HubRef, infos: list, adapters: int, room: Room) -> None:
    """The repo as the Hub declares it, against the room the caller has: nothing is downloaded yet."""
    if adapters > room.adapters:
        raise AdapterError(
            f"{ref} holds {adapters} adapters; your library has room for {max(room.adapters, 0)} more. "
            "Delete some first, or pull one adapter of the pack (owner/repo/adapter)."
        )
    total = sum(i.file_size or 0 for i in infos)
    if total > room.bytes:
        raise AdapterError(
            f"{ref} is {total / 2**20:,.1f} MB; your library has room for {max(room.bytes, 0) / 2**20:,.1f} MB more. "
            "Delete an adapter first."
        )


def is_refusal(e: BaseException | None) -> bool:
    """The Hub answered no (missing, gated, private, a bad revision or id): the cache must not stand in."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionNotFoundError

    status = getattr(getattr(e, "response", None), "status_code", None)
    return isinstance(e, (HFValidationError, RevisionNotFoundError)) or (
        isinstance(e, HfHubHTTPError) and status is not None and status < 500
    )


def is_connection_error(e: BaseException | None) -> bool:
    """The Hub could not be reached (no network, DNS, a timeout, offline mode, a server error), as opposed
    to refusing: the cache may serve what it has."""
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, HfHubHTTPError) and status is not None and status >= 500:
        return True
    names = " ".join(type(x).__name__ for x in (e, getattr(e, "__cause__", None)) if x is not None)
    return any(word in names for word in ("Connect", "Timeout", "Offline", "Network"))


def _plain(ref: HubRef, e: Exception) -> Exception:
    """The Hub's error in plain words, as an AdapterError (anything unknown comes back as it is)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RepositoryNotFoundError):
        return AdapterError(f"No repository {ref.repo_id!r} on the Hugging Face Hub, or it is private (sign in).")
    if isinstance(e, RevisionNotFoundError):
        return AdapterError(f"{ref.repo_id!r} has no revision {ref.revision!r}.")
    if isinstance(e, GatedRepoError):
        return AdapterError(f"{ref.repo_id!r} is gated: accept its terms on the Hub and sign in.")
    if isinstance(e, LocalEntryNotFoundError) or is_connection_error(e):
        why = "HF_HUB_OFFLINE=1 is set" if offline() else "the Hugging Face Hub cannot be reached"
        return AdapterError(
            f"Cannot pull {ref}: {why}, and it is not in the local Hugging Face cache. Pull it once with a "
            "connection (python -m adapter_core pull ...); afterwards it works offline."
        )
    if isinstance(e, HFValidationError):
        return AdapterError(f"{ref.repo_id!r} is not a valid repository id (owner/name).")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", "?")
        return AdapterError(f"The Hugging Face Hub refused the request for {ref} (HTTP {status}).")
    return e
