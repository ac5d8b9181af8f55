"""What a visitor may ask of the studio: public mode, the base-model allow-list, and every quota.

Local mode (the default off Spaces) is one trusted user: no owners, no allow-list, generous limits.
Public mode (on when `SPACE_ID` is set, or with `ADAPTER_STUDIO_PUBLIC=1`) treats every caller as a
stranger: base models come from the catalog plus `ADAPTER_STUDIO_ALLOWED_MODELS`, server paths are
refused, and every request is bounded. The service layer enforces this, so the browser and any API
caller meet the same checks.

Identities are free in public mode (an anonymous id is one page load away), so per-visitor limits alone
can be multiplied. Three more layers hold (docs/hosting.md, "Identity and fairness"): heavy work needs a
Hugging Face sign-in unless the operator opens it (`ADAPTER_STUDIO_ANONYMOUS_HEAVY=1`); every client
address has its own limits beside the visitor's; and no identity or address holds more than
`fair_share` of any shared queue.
"""

from __future__ import annotations

import math
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
    # Identity and fairness (public mode)
    anonymous_heavy: bool = False  # the operator opens heavy work to visitors who are not signed in
    anonymous_pool: int = 2  # runs queued or running for all anonymous visitors together (bundled samples)
    trust_forwarded: bool = False  # the client address is X-Forwarded-For's (a proxy in front: Spaces)
    fair_share: float = 0.25  # the most of any shared queue that one identity or one address may hold
    queue_size: int = 64  # events waiting in the Gradio queue
    serve_slots: int = 8  # classify, chat, route and compare running at once (they share batches)
    heavy_slots: int = 2  # data reads, evaluations, submits, library files and the Hub, at once
    light_slots: int = 8  # every other event (status, pickers), at once
    max_eval_rows: int = 2000  # rows of a test file, per evaluation
    max_eval_rows_anonymous: int = 200
    max_scored_pairs: int = 64  # test pairs an instruction adapter answers for its scores (the first ones)
    max_data_rows: int = 20_000  # rows of a data file (preview, validation, training)
    max_data_bytes: int = 10 * 2**20
    sample_rows: int = 2000  # token lengths are summarised from this many rows of a larger file
    max_pulls: int = 2  # Hub pulls at once, all visitors together (and one per visitor)
    # Studio-wide disk caps
    max_library_bytes: int = 5 * 2**30
    max_library_adapters: int = 5000
    max_runs_bytes: int = 20 * 2**30
    max_downloads_bytes: int = 2**30  # download, export and pack zips; the oldest go first
    max_downloads_per_owner: int = 3
    max_upload_bytes_per_address: int = 500 * 2**20  # files into Gradio's cache within the hour it keeps them
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
        forwarded = os.environ.get("ADAPTER_STUDIO_TRUST_FORWARDED", "").strip().lower()
        return cls(
            public=public,
            allowed_models=(*CATALOG, *extra),
            model_budget_bytes=int(budget * 2**30),
            anonymous_heavy=_env_flag("ADAPTER_STUDIO_ANONYMOUS_HEAVY"),
            # Spaces' proxy writes the visitor's address; elsewhere only the operator knows there is a proxy.
            trust_forwarded=_env_flag("ADAPTER_STUDIO_TRUST_FORWARDED")
            or (bool(os.environ.get("SPACE_ID")) and forwarded not in ("0", "false")),
            fair_share=min(1.0, max(0.01, float(os.environ.get("ADAPTER_STUDIO_FAIR_SHARE", "0.25")))),
        )

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
            anonymous_heavy=True,
            fair_share=1.0,
            max_eval_rows=10**7,
            max_eval_rows_anonymous=10**7,
            max_scored_pairs=10**7,
            max_data_rows=10**8,
            max_data_bytes=50 * 2**20,
            sample_rows=0,
            max_pulls=64,
            max_library_bytes=2**60,
            max_library_adapters=10**9,
            max_runs_bytes=2**60,
            max_downloads_bytes=2**60,
            max_downloads_per_owner=10**6,
        )

    # Fairness --------------------------------------------------------------------------------------
    def share(self, capacity: int) -> int:
        """The most of a shared queue of `capacity` places that one identity or one address may hold."""
        return max(1, math.ceil(capacity * self.fair_share))

    def signed_in(self, owner: str | None) -> bool:
        """Whether `owner` may do heavy work: anyone in local mode or when the operator opened it, else
        a visitor signed in with Hugging Face."""
        return not self.public or self.anonymous_heavy or str(owner or "").startswith("hf:")

    def check_heavy(self, owner: str | None, what: str) -> None:
        """Refuse heavy work (`what`, e.g. "Pulling from the Hub") to a visitor who is not signed in."""
        if not self.signed_in(owner):
            raise AdapterError(
                f"{what} needs a Hugging Face sign-in in this public studio (the Sign in button at the top). "
                "Without one you can train on the bundled samples, and use and compare adapters."
            )

    def max_eval_rows_for(self, owner: str | None) -> int:
        return self.max_eval_rows if self.signed_in(owner) else self.max_eval_rows_anonymous

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
