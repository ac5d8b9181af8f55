"""The Hub's answers about a dataset, in plain words: missing, private, gated, unreachable, or not cached
while offline. Messages name the dataset, never a path on this machine. What counts as a refusal or an
outage is the same as for a pull of adapters (`adapter_core.pull`)."""

from __future__ import annotations

from typing import Any

from ..pull import is_connection_error, offline
from .data import DataError


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
