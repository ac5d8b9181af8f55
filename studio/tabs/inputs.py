"""The studio's inputs for settings, made from their declarations, and the API endpoints that take them.

A setting's component gets its label, info line, choices, default and bounds from the declaration
(`adapter_core/settings.py`); a tab adds only layout (a slider's range and step, visibility). An endpoint
that takes the form's settings is a function of `**form` whose signature, for Gradio's API and its docs,
names each setting with its help: `/start_training` and `/sweep` callers pass them by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from adapter_core import Setting

from ..policy import Policy
from ..settings import AUTO, choices_for, form_settings, info_for
from .common import COLUMNS

AUTO_HELP = "Size the run from the data: batch size, epochs and learning rate chosen by the preset's recipe"


def component(s: Setting, policy: Policy, slider: tuple[float, float, float] | None = None, **layout: Any):
    """The input for `s`. `slider` (low, high, step) makes a number a slider, its high end cut to the
    studio's limit for the setting; `layout` passes on (visible, minimum, ...)."""
    value = s.typical if s.default is None else s.default
    common = {"label": s.label, "info": info_for(s, policy.public, value), **layout}
    if s.type is bool:
        return gr.Checkbox(value, **common)
    if s.choices:
        return gr.Dropdown(choices_for(s, policy.public), value=value, **common)
    if s.type in (int, float):
        limit = getattr(policy, s.limit) if s.limit else None
        highs = [
            h for h in (s.bounds.high if s.bounds else None, limit, slider[1] if slider else None) if h is not None
        ]
        high = min(highs) if highs else None
        if slider:
            return gr.Slider(slider[0], high, value=value, step=slider[2], **common)
        bounds = {"minimum": s.bounds.low if s.bounds else None, "maximum": high}
        precision = {"precision": 0} if s.type is int else {}
        return gr.Number(value, **{**bounds, **precision, **common})
    if s.type is list:
        return gr.Textbox(", ".join(str(v) for v in value or []), **common)
    return gr.Textbox(value or "", **common)


def takes_settings(fn: Callable, params: dict[str, Setting | str], description: str) -> Callable:
    """`fn(owner, source, base_model, task, name, request=None, **form)` as Gradio's API sees it: each of
    `params` a keyword argument (a setting, documented by its help, or a name with its own help line)."""
    head = list(inspect.signature(fn).parameters.values())[:-1]  # all but **form
    keywords = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in params]
    fn.__signature__ = inspect.Signature([*head, *keywords])
    lines = [f"    {k}: {p.help if isinstance(p, Setting) else p}" for k, p in params.items()]
    fn.__doc__ = description + "\n\nArgs:\n" + "\n".join(lines)
    return fn


def form_params(keys: list[str]) -> dict[str, Setting | str]:
    """An endpoint's keyword parameters for the form's settings `keys`, the auto toggle, and the columns."""
    form = form_settings()
    params: dict[str, Setting | str] = {k: form[k] for k in keys}
    params[AUTO] = AUTO_HELP
    params.update(
        {f"{c}_column": f"The data file's column holding the {c} (default: found by its name)" for c in COLUMNS}
    )
    return params


def form_components(ctx, params: dict[str, Setting | str]) -> dict[str, Any]:
    """The components that fill `params`, by parameter name."""
    return {k: ctx["columns"][k.removesuffix("_column")] if k.endswith("_column") else ctx[k] for k in params}


def split_form(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the settings, the column mapping) of an endpoint's keyword arguments."""
    mapping = {c: form[f"{c}_column"] for c in COLUMNS if form.get(f"{c}_column")}
    return {k: v for k, v in form.items() if not k.endswith("_column")}, mapping
