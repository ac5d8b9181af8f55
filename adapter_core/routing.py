"""A router sends each message to a department: the instruction adapter its predicted label names.
Below the router's out-of-scope threshold, or for a label no department covers, it falls back: to the
bare base model, or to a fixed hand-off message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .inference import Prediction


@dataclass
class Route:
    label: str
    confidence: float
    threshold: float
    target: str | None  # the department adapter; None: the message falls back
    reason: str = ""  # why it fell back, in plain words

    @property
    def fallback(self) -> bool:
        return self.target is None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "threshold": self.threshold,
            "department": self.target,
            "fallback": self.fallback,
            "reason": self.reason or None,
        }


def department_routes(labels: Sequence[str], adapters: Sequence[str]) -> dict[str, str]:
    """Router label -> the instruction adapter whose name shares a word with it (orders -> orders-v2)."""
    routes = {}
    for label in labels:
        low = label.lower()
        match = next((n for n in adapters if low in n.lower() or n.lower().split("-")[0] in low), None)
        if match:
            routes[label] = match
    return routes


def decide(prediction: Prediction, routes: dict[str, str], threshold: float = 0.0) -> Route:
    """Where one message goes: its label's department, unless the router is unsure or none covers it."""
    if prediction.confidence < threshold:
        reason = f"confidence {prediction.confidence:.3g} is below the out-of-scope threshold {threshold:.3g}"
        return Route(prediction.label, prediction.confidence, threshold, None, reason)
    target = routes.get(prediction.label)
    reason = "" if target else f"no instruction adapter covers the label {prediction.label!r}"
    return Route(prediction.label, prediction.confidence, threshold, target, reason)


def saved_threshold(meta: dict[str, Any]) -> float | None:
    """The out-of-scope threshold in an adapter's metadata (`adapter_config.json`), or None."""
    section = meta.get("out_of_scope") if isinstance(meta, dict) else None
    value = section.get("threshold") if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
