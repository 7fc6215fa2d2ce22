"""Turning a personality's settings schema (and its sampling) into Gradio controls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Sampling
from ..personality import Personality, Setting


@dataclass(frozen=True)
class ControlSpec:
    """Which Gradio component a setting becomes, and its constructor arguments."""

    kind: str  # checkbox | dropdown | slider | number | textbox | textarea
    kwargs: dict[str, Any] = field(default_factory=dict)


def control_spec(setting: Setting, value: Any = None) -> ControlSpec:
    """The control for ``setting``: boolean → checkbox, enum → dropdown, bounded number → slider,
    other numbers → number box, string → textbox, multiline string → text area."""
    current = setting.default if value is None else value
    common: dict[str, Any] = {"label": setting.label, "value": current}
    if setting.description:
        common["info"] = setting.description
    if setting.type == "boolean":
        return ControlSpec("checkbox", common)
    if setting.enum is not None:
        return ControlSpec("dropdown", {**common, "choices": list(setting.enum)})
    if setting.type in ("integer", "number"):
        if setting.minimum is not None and setting.maximum is not None:
            step = setting.step or (1 if setting.type == "integer" else 0.01)
            return ControlSpec(
                "slider",
                {**common, "minimum": setting.minimum, "maximum": setting.maximum, "step": step},
            )
        precision = 0 if setting.type == "integer" else None
        return ControlSpec("number", {**common, "precision": precision})
    if setting.multiline:
        return ControlSpec("textarea", {**common, "lines": 3, "max_lines": 12})
    return ControlSpec("textbox", {**common, "lines": 1})


def build_control(setting: Setting, value: Any = None) -> Any:
    """A Gradio component for ``setting`` showing ``value`` (default: the setting's default)."""
    import gradio as gr

    spec = control_spec(setting, value)
    makers: dict[str, Any] = {
        "checkbox": gr.Checkbox,
        "dropdown": gr.Dropdown,
        "slider": gr.Slider,
        "number": gr.Number,
        "textbox": gr.Textbox,
        "textarea": gr.Textbox,
    }
    return makers[spec.kind](**spec.kwargs)


def settings_from(personality: Personality, values: Sequence[Any]) -> dict[str, Any]:
    """The settings named by ``personality.settings`` order, from control values; bad ones are
    dropped (the default applies) so one odd control cannot break a turn."""
    result: dict[str, Any] = {}
    for setting, value in zip(personality.settings.values(), values, strict=False):
        try:
            result[setting.name] = setting.coerce(value)
        except ValueError:
            continue
    return result


def saved_values(personality: Personality, saved: Mapping[str, Any]) -> dict[str, Any]:
    """Saved settings that still fit the personality's schema, defaults for the rest."""
    values = personality.default_settings()
    for name, value in saved.items():
        if name in personality.settings:
            try:
                values[name] = personality.settings[name].coerce(value)
            except ValueError:
                continue  # the schema changed since it was saved: keep the default
    return values


# The sampling fields the panel shows; their labels and bounds come from the schema.
SAMPLING_PANEL: tuple[str, ...] = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "repetition_penalty",
)


def _sampling_fields() -> tuple[tuple[str, str, float, float | None, float], ...]:
    """(name, label, minimum, maximum or None, step) of each panel field, from the schema's
    ``sampling``: one statement of the bounds for the file, the steps and the UI."""
    from ..schema import base_schema

    props = base_schema()["$defs"]["sampling"]["properties"]
    fields = []
    for name in SAMPLING_PANEL:
        spec = props[name]
        integer = spec["type"] == "integer"
        step = float(spec.get("x-ui-step", 1 if integer else 0.01))
        # A slider cannot exclude its end: the smallest value above an exclusive minimum.
        low = spec.get(
            "minimum", spec.get("exclusiveMinimum", 0) + step * ("exclusiveMinimum" in spec)
        )
        label = spec.get("title") or name.replace("_", " ").capitalize()
        fields.append((name, label, low, spec.get("maximum"), step))
    return tuple(fields)


SAMPLING_FIELDS = _sampling_fields()
SAMPLING_NAMES: tuple[str, ...] = (*SAMPLING_PANEL, "seed")


def sampling_values(sampling: Sampling) -> list[Any]:
    """The sampling panel's values for a personality's sampling (seed -1 means random)."""
    values: list[Any] = [getattr(sampling, name) for name, *_ in SAMPLING_FIELDS]
    return [*values, -1 if sampling.seed is None else sampling.seed]


def sampling_from(values: Sequence[Any]) -> dict[str, Any]:
    """Sampling overrides from the panel's values, in :data:`SAMPLING_NAMES` order."""
    result: dict[str, Any] = {}
    for (name, _label, _lo, _hi, step), value in zip(SAMPLING_FIELDS, values, strict=False):
        if value is None:
            continue
        result[name] = int(value) if float(step).is_integer() else float(value)
    if len(values) > len(SAMPLING_FIELDS):
        seed = values[len(SAMPLING_FIELDS)]
        if seed is not None and int(seed) >= 0:
            result["seed"] = int(seed)
    return result


def build_sampling_controls(sampling: Sampling) -> list[Any]:
    """A slider for each bounded sampling field, a number box for the others and the seed."""
    import gradio as gr

    values = sampling_values(sampling)
    controls: list[Any] = []
    for (_name, label, lo, hi, step), value in zip(SAMPLING_FIELDS, values, strict=False):
        if hi is None:
            controls.append(
                gr.Number(
                    value=value, minimum=lo, precision=0 if step.is_integer() else None, label=label
                )
            )
        else:
            controls.append(gr.Slider(minimum=lo, maximum=hi, step=step, value=value, label=label))
    controls.append(gr.Number(value=values[-1], precision=0, label="Seed (-1 = random)"))
    return controls
