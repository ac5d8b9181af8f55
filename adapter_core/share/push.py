"""Push an adapter (or a pack of them) to the Hugging Face Hub as one commit.

`push_operations` builds the commit from the folder without any network: the adapter's config made fit
to publish (no owner, no server path, no data file name), its weights, a fresh model card written for
the repo it goes to, and the curve picture. `push_adapter` creates the repo if needed and sends it;
`folder_card` previews the card a push would write.
"""

from __future__ import annotations

import io as _bytes
import json
import tempfile
from pathlib import Path
from typing import Any

from ..card import curve_png, model_card, parameters, read_curve
from ..errors import AdapterError
from ..io import read_adapter_config
from ..public import public_meta
from ..pull import adapter_folders, check_adapter_folder, parse_ref
from ..schema import CARD_FILE, CONFIG_FILE, CURVE_PNG, STATS_FILE, WEIGHTS_FILE


def folder_card(folder: str | Path, repo_id: str | None = None, **kwargs: Any) -> str:
    """The card of an adapter folder as it would be published (a preview: the curve is not drawn)."""
    folder = Path(folder)
    meta = public_meta(read_adapter_config(folder))
    return model_card(meta, read_curve(folder), parameters(folder), repo_id=repo_id, **kwargs)


def adapter_files(folder: Path, repo_id: str | None = None, **card: Any) -> dict[str, Any]:
    """path in the repo -> bytes or a local file, for one adapter folder (checked as a pull would be)."""
    meta = public_meta(check_adapter_folder(folder))
    events = read_curve(folder)
    out: dict[str, Any] = {
        CONFIG_FILE: json.dumps(meta, indent=2).encode(),
        WEIGHTS_FILE: folder / WEIGHTS_FILE,
        **({STATS_FILE: folder / STATS_FILE} if (folder / STATS_FILE).is_file() else {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / CURVE_PNG
        has_curve = curve_png(events, png)
        if has_curve:
            out[CURVE_PNG] = png.read_bytes()
    text = model_card(meta, events, parameters(folder), has_curve, repo_id=repo_id, **card)
    out[CARD_FILE] = text.encode()
    return out


def push_files(folder: str | Path, repo_id: str | None = None, **card: Any) -> dict[str, Any]:
    """What a push of `folder` uploads: one adapter, or a pack (adapters one folder down, and the pack's
    own README.md as written by `pack`)."""
    folder = Path(folder)
    folders = adapter_folders(folder)
    if not folders:
        raise AdapterError(f"{folder.name!r} holds no adapter: it needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    if folders == [folder]:
        return adapter_files(folder, repo_id, **card)
    out: dict[str, Any] = {}
    for sub in folders:  # as `pack` wrote them: their cards already name the repo
        meta = check_adapter_folder(sub)
        out[f"{sub.name}/{CONFIG_FILE}"] = json.dumps(public_meta(meta), indent=2).encode()
        out |= {
            f"{sub.name}/{f}": sub / f for f in (WEIGHTS_FILE, STATS_FILE, CARD_FILE, CURVE_PNG) if (sub / f).is_file()
        }
    if (folder / CARD_FILE).is_file():
        out[CARD_FILE] = (folder / CARD_FILE).read_bytes()
    return out


def push_operations(folder: str | Path, repo_id: str | None = None, **card: Any) -> list:
    """The commit's `CommitOperationAdd`s, built without the network."""
    from huggingface_hub import CommitOperationAdd

    ops = []
    for path, content in push_files(folder, repo_id, **card).items():
        source = content if isinstance(content, Path) else _bytes.BytesIO(content)
        ops.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=source))
    return ops


def push_adapter(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    **card: Any,
) -> str:
    """Push `folder` to the Hub repo `repo_id` (created if missing) with `token` (None: the machine's
    login). Returns the commit's URL. `card`: `license`, `datasets` for the model card."""
    from huggingface_hub import HfApi

    ref = parse_ref(f"hf://{repo_id}")
    if ref is None or ref.subfolder or ref.revision:
        raise AdapterError(f"{repo_id!r} is not a repository id: write owner/name.")
    ops = push_operations(folder, ref.repo_id, **card)
    api = HfApi(token=token)
    message = commit_message or f"Upload adapter {Path(folder).name} with Adapter Studio"
    try:
        api.create_repo(ref.repo_id, private=private, exist_ok=True)
        return api.create_commit(ref.repo_id, ops, commit_message=message).commit_url
    except Exception as e:
        raise _push_error(ref.repo_id, e) from None


def _push_error(repo_id: str, e: Exception) -> Exception:
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    if isinstance(e, LocalTokenNotFoundError):
        return AdapterError("Pushing needs a Hugging Face token: sign in (hf auth login) or pass one.")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return AdapterError(f"This token cannot write to {repo_id!r} (HTTP {status}); it needs write access.")
        return AdapterError(f"The Hugging Face Hub refused the push to {repo_id!r} (HTTP {status}).")
    if "Connect" in type(e).__name__ or "Timeout" in type(e).__name__:
        return AdapterError(f"Cannot push to {repo_id!r}: the Hugging Face Hub cannot be reached.")
    return e
