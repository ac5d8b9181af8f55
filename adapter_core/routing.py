"""A router sends each message to a department: the instruction adapter its predicted label names.
Below the router's out-of-scope threshold, or for a label no department covers, it falls back: to the
bare base model, or to a fixed hand-off message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import AdapterError
from .inference import Prediction
from .out_of_scope import MAX_FALSE_REJECTION


@dataclass
class Route:
    label: str
    confidence: float
    threshold: float | None  # the out-of-scope threshold, in the score's units; None: none calibrated
    target: str | None  # the department adapter; None: the message falls back
    reason: str = ""  # why it fell back, in plain words
    ood_score: float | None = None  # the router's out-of-scope score of the message (higher: further out)
    in_scope: bool = True

    @property
    def fallback(self) -> bool:
        return self.target is None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "in_scope": self.in_scope,
            "ood_score": score_for_json(self.ood_score),
            "threshold": score_for_json(self.threshold),
            "department": self.target,
            "fallback": self.fallback,
            "reason": self.reason or None,
        }


def score_for_json(value: float | None) -> float | None:
    """A score for JSON: 4 significant digits; an infinite one (NaN logits) as the largest float."""
    if value is None:
        return None
    return float(f"{max(min(value, 3.4e38), -3.4e38):.4g}")


def department_routes(labels: Sequence[str], adapters: Sequence[str]) -> dict[str, str]:
    """Router label -> the instruction adapter whose name shares a word with it (orders -> orders-v2)."""
    routes = {}
    for label in labels:
        low = label.lower()
        match = next((n for n in adapters if low in n.lower() or n.lower().split("-")[0] in low), None)
        if match:
            routes[label] = match
    return routes


def decide(prediction: Prediction, routes: dict[str, str], threshold: float | None = None) -> Route:
    """Where one message goes: its label's department, unless the router judges it out of scope (by its
    own calibrated threshold, or by `threshold` in its score's units) or no department covers the label."""
    p, score = prediction, prediction.ood_score
    in_scope, threshold = judged(p, threshold)
    if not in_scope:
        reason = f"its out-of-scope score {score:.3g} is above the router's threshold {threshold:.3g}"
        return Route(p.label, p.confidence, threshold, None, reason, score, False)
    target = routes.get(p.label)
    reason = "" if target else f"no instruction adapter covers the label {p.label!r}"
    return Route(p.label, p.confidence, threshold, target, reason, score, True)


def judged(prediction: Prediction, threshold: float | None = None) -> tuple[bool, float | None]:
    """(in scope, by which threshold): the prediction's own decision, or its score against `threshold`."""
    if threshold is None or prediction.ood_score is None:
        return prediction.in_scope, prediction.threshold if threshold is None else threshold
    return prediction.ood_score <= threshold, threshold


def out_of_scope_rule(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The out-of-scope decision an adapter's metadata (`adapter_config.json`) names: its score, its
    threshold in that score's units and the false-rejection rate it was set for; None when it has none.
    An adapter saved before scores had names decided on its top-class confidence (msp)."""
    section = meta.get("out_of_scope") if isinstance(meta, dict) else None
    value = section.get("threshold") if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    score = section.get("score")
    if score is None:
        return {"score": "msp", "threshold": 1 - float(value), "false_rejection": None, "legacy": True}
    return {"score": score, "threshold": float(value), "false_rejection": section.get("false_rejection")}


def check_false_rejection(rate: Any) -> None:
    """A requested in-scope false-rejection rate: None (the router's calibrated one) or a share in bounds."""
    if rate is not None and not (
        isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate <= MAX_FALSE_REJECTION
    ):
        raise AdapterError(f"The false-rejection rate is a share from 0 to {MAX_FALSE_REJECTION:g}; got {rate!r}.")


def threshold_at(meta: dict[str, Any], false_rejection: float) -> float | None:
    """The router's threshold for another in-scope false-rejection rate, from the curve its calibration
    saved (the nearest rate it lists); None when it saved none (an adapter saved before the curve)."""
    section = meta.get("out_of_scope") if isinstance(meta, dict) else None
    curve = section.get("curve") if isinstance(section, dict) else None
    if not isinstance(curve, dict) or not curve.get("false_rejection"):
        return None
    rates, thresholds = curve["false_rejection"], curve["threshold"]
    i = min(range(len(rates)), key=lambda j: abs(rates[j] - false_rejection))
    return float(thresholds[i])


def curve_point(meta: dict[str, Any], false_rejection: float) -> dict[str, float] | None:
    """What the saved curve says of a rate on validation: the share of in-scope messages rejected and,
    when out-of-scope examples were given, the share of those caught."""
    section = meta.get("out_of_scope") if isinstance(meta, dict) else None
    curve = section.get("curve") if isinstance(section, dict) else None
    if not isinstance(curve, dict) or not curve.get("false_rejection"):
        return None
    rates = curve["false_rejection"]
    i = min(range(len(rates)), key=lambda j: abs(rates[j] - false_rejection))
    recall = curve.get("oos_recall")
    return {"false_rejection": rates[i], **({"oos_recall": recall[i]} if recall else {})}
