"""What a visitor may ask of the studio: public mode, the base-model allow-list, and every quota.

Local mode (the default off Spaces) is one trusted user: no owners, no allow-list, generous limits.
Public mode (on when `SPACE_ID` is set, or with `ADAPTER_STUDIO_PUBLIC=1`) treats every caller as a
stranger: base models come from the catalog plus `ADAPTER_STUDIO_ALLOWED_MODELS`, server paths are
refused, and every request is bounded. The service layer enforces this, so the browser and any API
caller meet the same checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from adapter_core import CATALOG, AdapterError
from adapter_core.serve import Limits


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Policy:
    public: bool = False
    allowed_models: tuple[str, ...] = tuple(CATALOG)
    # Training
    max_jobs_per_owner: int = 2  # queued or running
    max_queue: int = 20  # queued or running, all owners together
    max_epochs: float = 20.0
    max_steps: int = 2000
    max_seconds: float = 1800.0  # training time of one run
    max_batch_size: int = 128
    max_length: int = 1024
    max_sweep_runs: int = 4  # runs in one sweep (it counts as one run against the owner's limit)
    # Adapters
    max_adapters_per_owner: int = 20
    max_bytes_per_owner: int = 200 * 2**20
    max_bottleneck: int = 1024
    max_labels: int = 512
    # Zip uploads
    max_zip_entries: int = 16
    max_member_bytes: int = 64 * 2**20
    max_zip_ratio: float = 200.0  # uncompressed / compressed, per member
    # Serving
    max_prompt_chars: int = 4000
    max_new_tokens: int = 512
    max_route_messages: int = 32
    # Resident base models (serving), least recently used evicted first
    model_budget_bytes: int = 4 * 2**30
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls) -> Policy:
        """Public on Spaces or with ADAPTER_STUDIO_PUBLIC=1; ADAPTER_STUDIO_PUBLIC=0 forces local mode."""
        flag = os.environ.get("ADAPTER_STUDIO_PUBLIC", "").strip().lower()
        public = _env_flag("ADAPTER_STUDIO_PUBLIC") or (bool(os.environ.get("SPACE_ID")) and flag not in ("0", "false"))
        if not public:
            return cls.local()
        extra = [m.strip() for m in os.environ.get("ADAPTER_STUDIO_ALLOWED_MODELS", "").split(",") if m.strip()]
        budget = float(os.environ.get("ADAPTER_STUDIO_MODEL_BUDGET_GB", "4"))
        return cls(public=public, allowed_models=(*CATALOG, *extra), model_budget_bytes=int(budget * 2**30))

    @classmethod
    def local(cls) -> Policy:
        """One trusted user: any model or path, and limits that only stop accidents."""
        return cls(
            public=False,
            max_jobs_per_owner=1000,
            max_queue=1000,
            max_epochs=1000.0,
            max_steps=10**7,
            max_seconds=0.0,
            max_batch_size=4096,
            max_length=32768,
            max_sweep_runs=64,
            max_adapters_per_owner=10**6,
            max_bytes_per_owner=2**50,
            max_bottleneck=65536,
            max_labels=100_000,
            max_zip_entries=64,
            max_member_bytes=2 * 2**30,
            max_zip_ratio=1000.0,
            max_prompt_chars=100_000,
            max_new_tokens=4096,
            max_route_messages=256,
        )

    # Checks ----------------------------------------------------------------------------------------
    def serve_limits(self) -> Limits:
        """What one serving request may ask for (the HTTP API and the Use tab alike)."""
        return Limits(
            max_prompt_chars=self.max_prompt_chars,
            max_new_tokens=self.max_new_tokens,
            max_inputs=self.max_route_messages,
            max_waiting=64 if self.public else 256,
            # Answers in progress per visitor, whichever door (API, chat, route-many, compare): serve's default.
            max_in_flight_per_owner=Limits.max_in_flight_per_owner if self.public else None,
            max_body_bytes=Limits.max_body_bytes if self.public else 64 * 2**20,
        )

    def check_model(self, name: str) -> str:
        """The base model name, if this visitor may load it."""
        name = (name or "").strip()
        if not name:
            raise AdapterError("Pick a base model from the list.")
        if self.public and name not in self.allowed_models:
            raise AdapterError(
                f"This public studio serves only these base models: {', '.join(self.allowed_models)}. "
                "Run the studio on your own machine to use any hub model or local folder."
            )
        return name

    def check_prompt(self, text: str, what: str = "message") -> str:
        text = text or ""
        if not text.strip():
            raise AdapterError(f"Type a {what} first.")
        if len(text) > self.max_prompt_chars:
            raise AdapterError(
                f"That {what} is {len(text):,} characters; the limit is {self.max_prompt_chars:,}. Shorten it."
            )
        return text

    def clamp_new_tokens(self, n: int | float | None, default: int = 160) -> int:
        n = default if n is None else int(n)
        if n < 1:
            raise AdapterError(f"max new tokens must be at least 1; got {n}.")
        return min(n, self.max_new_tokens)
