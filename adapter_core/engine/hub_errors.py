"""The Hub's answers about a dataset, in plain words: missing, private, gated, unreachable, or not cached
while offline. Messages name the dataset, never a path on this machine."""

from __future__ import annotations

from typing import Any

from ..pull import offline
from .data import DataError


def is_refusal(e: BaseException | None) -> bool:
    """The Hub answered no (missing, gated, private, a bad revision or id): the cache must not stand in."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RevisionNotFoundError

    status = getattr(getattr(e, "response", None), "status_code", None)
    return isinstance(e, (HFValidationError, RevisionNotFoundError)) or (
        isinstance(e, HfHubHTTPError) and status is not None and status < 500
    )


def is_connection_error(e: BaseException | None) -> bool:
    """The Hub could not be reached (no network, DNS, a timeout, offline mode, a server error)."""
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, HfHubHTTPError) and status is not None and status >= 500:
        return True
    names = " ".join(type(x).__name__ for x in (e, getattr(e, "__cause__", None)) if x is not None)
    return any(word in names for word in ("Connect", "Timeout", "Offline", "Network"))


def hub_error(ref: Any, e: Exception) -> Exception:
    """`e` as a DataError that says what to do; anything unknown comes back as it is."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = ref.repo_id
    if isinstance(e, GatedRepoError):
        return DataError(f"The dataset {repo} is gated: accept its terms on the Hub and sign in.")
    if isinstance(e, RepositoryNotFoundError):
        return DataError(f"No dataset {repo} on the Hugging Face Hub, or it is private (sign in to use it).")
    if isinstance(e, RevisionNotFoundError):
        return DataError(f"The dataset {repo} has no revision {ref.revision!r}.")
    if isinstance(e, LocalEntryNotFoundError) or is_connection_error(e):
        why = "HF_HUB_OFFLINE=1 is set" if offline() else "the Hugging Face Hub cannot be reached"
        return DataError(
            f"Cannot load {ref}: {why}, and it is not in the local Hugging Face cache. Load it once with a "
            "connection; afterwards it loads offline."
        )
    if isinstance(e, HFValidationError):
        return DataError(f"{repo!r} is not a valid dataset id (OWNER/NAME).")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", "?")
        return DataError(f"The Hugging Face Hub refused the request for the dataset {repo} (HTTP {status}).")
    return e
