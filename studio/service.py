"""The studio's app-wide state and operations, without gradio: the UI handlers are thin calls into this.

One `Studio` per process holds the job manager, the run store, the adapter library and the resident
base models that serve requests. Training always uses its own base instance (the engine loads one),
so serving never sees train-mode dropout or a half-trained adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adapter_core import (
    AdapterConfig,
    AdapterError,
    Base,
    Prediction,
    classify,
    count_adapter_params,
    generate_batch,
    load_adapter,
    load_base,
    remove_adapter,
    stream_generate,
)
from adapter_core.catalog import CATALOG
from adapter_core.engine.evaluation import evaluate_file
from adapter_core.engine.jobs import Job, JobManager
from adapter_core.engine.runs import RunStore
from adapter_core.inject import TASK_ADAPTER, list_adapters
from adapter_core.paths import studio_home

from .library import Entry, Library

USE = {"classification": "classify", "instruction": "chat"}


@dataclass
class ModelInfo:
    name: str
    architecture: str
    model_type: str
    family: str
    parameters: int
    hidden_size: int
    layers: int
    tasks: tuple[str, ...]


class Studio:
    def __init__(self, home: str | Path | None = None):
        self.home = Path(home or studio_home())
        self.library = Library(self.home)
        self.jobs = JobManager(RunStore(self.home), on_finish=self._publish)
        self._bases: dict[str, Base] = {}
        self._served: dict[tuple[str, str], float] = {}  # (base, adapter) -> library version loaded
        self._lock = threading.RLock()
        self._base_locks: dict[str, threading.Lock] = {}

    # Base models ---------------------------------------------------------------------------------
    def base(self, name: str) -> Base:
        """The resident serving instance of base `name`, loaded on first use."""
        with self._lock:
            lock = self._base_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._bases:
                self._bases[name] = load_base(name)
            return self._bases[name]

    def model_info(self, name: str) -> ModelInfo:
        base = self.base(name)
        config = base.model.config
        entry = CATALOG.get(name)
        tasks = (
            entry.tasks
            if entry
            else (("classification", "instruction") if base.family == "decoder" else ("classification",))
        )
        return ModelInfo(
            name,
            type(base.model).__name__,
            config.model_type,
            base.family,
            base.num_parameters,
            config.hidden_size,
            config.num_hidden_layers,
            tasks,
        )

    def estimate(self, base_name: str, config: AdapterConfig, num_labels: int) -> dict[str, float]:
        """Trainable parameters, their share of the base, and disk sizes, before training."""
        base = self.base(base_name)
        trainable = count_adapter_params(base.model, config, num_labels)
        params = base.num_parameters
        return {
            "trainable": trainable,
            "percent": 100 * trainable / params,
            "adapter_mb": trainable * 4 / 1e6,
            "full_copy_mb": sum(p.numel() * p.element_size() for p in base.model.parameters()) / 1e6,
        }

    # Serving -------------------------------------------------------------------------------------
    def served(self, adapter: str, task: str | None = None) -> tuple[Base, Entry]:
        """Base and library entry for `adapter`, with the adapter loaded (reloaded if it changed).
        With `task`, the adapter must be of that task."""
        entry = self.library.get(adapter)
        if task is not None and entry.task != task:
            raise AdapterError(f"{adapter!r} is {TASK_ADAPTER[entry.task]}; pick {TASK_ADAPTER[task]} to {USE[task]}.")
        base = self.base(entry.base)
        key = (entry.base, entry.name)
        with self._lock:
            if self._served.get(key) != entry.version:
                if entry.name in list_adapters(base.model):
                    remove_adapter(base.model, entry.name)
                load_adapter(base.model, entry.path, name=entry.name)
                self._served[key] = entry.version
        return base, entry

    def classify(self, adapters: str | list[str], texts: list[str]) -> list[Prediction]:
        """Label `texts` with one classification adapter, or `texts[i]` with `adapters[i]`. Rows whose
        adapters share a base run as one mixed batch."""
        names = [adapters] * len(texts) if isinstance(adapters, str) else list(adapters)
        return self._per_base(names, texts, "classification", lambda b, t, n: classify(b.model, b.tokenizer, t, n))

    def answer(
        self, adapters: list[str | None], messages: list[str], base_name: str = "", max_new_tokens: int = 160
    ) -> list[str]:
        """Greedy answers: `messages[i]` through instruction adapter `adapters[i]` (None: the bare
        `base_name`). Rows on one base are generated together, in one mixed-adapter batch."""
        return self._per_base(
            adapters,
            messages,
            "instruction",
            lambda b, m, n: generate_batch(b.model, b.tokenizer, m, n, max_new_tokens),
            base_name,
        )

    def _per_base(self, names: list[str | None], inputs: list, task: str, run: Callable, base_name: str = "") -> list:
        """Serve each named adapter (None: the bare `base_name`), call `run(base, inputs, names)` once per
        base on that base's rows, and return the results in row order."""
        bases = {n: self.base(base_name) if n is None else self.served(n, task)[0] for n in dict.fromkeys(names)}
        groups: dict[int, tuple[Base, list[int]]] = {}
        for i, name in enumerate(names):
            groups.setdefault(id(bases[name]), (bases[name], []))[1].append(i)
        out: list = [None] * len(names)
        for base, rows in groups.values():
            for i, result in zip(rows, run(base, [inputs[i] for i in rows], [names[i] for i in rows]), strict=True):
                out[i] = result
        return out

    def chat(
        self,
        adapter: str | None,
        base_name: str,
        message: str,
        max_new_tokens: int = 160,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Stream the answer of instruction adapter `adapter` (None: the bare base model)."""
        if adapter:
            base, entry = self.served(adapter, "instruction")
            name = entry.name
        else:
            base, name = self.base(base_name), None
        return stream_generate(base.model, base.tokenizer, message, name, max_new_tokens, stop=stop)

    def route(
        self, router: str, messages: list[str], mapping: dict[str, str] | None = None
    ) -> list[tuple[Prediction, str]]:
        """The router's prediction for each message, and the instruction adapter that should answer it."""
        predictions = self.classify(router, messages)
        mapping = mapping or self.default_routes(router)
        missing = sorted({p.label for p in predictions} - {label for label, target in mapping.items() if target})
        if missing:
            raise AdapterError(
                f"The router chose {', '.join(map(repr, missing))}, which no instruction adapter covers. "
                "Train or upload an instruction adapter whose name contains that label."
            )
        return [(p, mapping[p.label]) for p in predictions]

    def route_and_answer(
        self, router: str, messages: list[str], mapping: dict[str, str] | None = None, max_new_tokens: int = 160
    ) -> list[tuple[Prediction, str, str]]:
        """Route every message, then answer them all in one batch in which each row uses its department's
        adapter: a hub's worth of traffic in one pass over the shared base."""
        routes = self.route(router, messages, mapping)
        answers = self.answer([target for _, target in routes], messages, max_new_tokens=max_new_tokens)
        return [(p, target, a) for (p, target), a in zip(routes, answers, strict=True)]

    def default_routes(self, router: str) -> dict[str, str]:
        """Router label -> the instruction adapter whose name shares a word with it (orders -> orders-v2)."""
        labels = self.library.get(router).meta.get("labels") or []
        chat = self.library.names("instruction")
        routes = {}
        for label in labels:
            low = label.lower()
            match = next((n for n in chat if low in n.lower() or n.lower().split("-")[0] in low), None)
            if match:
                routes[label] = match
        return routes

    def evaluate(self, adapters: list[str], data_path: str) -> list[dict]:
        rows = []
        for name in adapters:
            base, entry = self.served(name)
            metrics = evaluate_file(base, entry.name, data_path)
            rows.append(
                {"adapter": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
            )
        return rows

    # Training ------------------------------------------------------------------------------------
    def _publish(self, job: Job) -> None:
        if job.status in ("completed", "stopped") and job.run.has_adapter:
            entry = self.library.publish(job.run.adapter_dir, job.config.name, curve=job.run.dir / "metrics.jsonl")
            job.run.set_status(job.status, library_name=entry.name)
            job.events.append(
                {"kind": "published", "message": f"Saved to the library as {entry.name!r}.", "library_name": entry.name}
            )
