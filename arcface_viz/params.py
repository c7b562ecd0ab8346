"""Declarative parameter specs.

One list of :class:`Param` per lesson drives everything a control needs (the idea of
tensorflow/playground's ``state.ts``): the Streamlit widgets (``pages/_ui.py``), validation, the page's
URL (``st.query_params``) and the CLI flags (``argparse``).  Nothing here imports Streamlit.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .losses import LOSS_PARAMS, LOSSES, PARAM_NAMES
from .settings import FALSE_WORDS, TRUE_WORDS


class ParamError(ValueError):
    """A value that cannot be used; the message is written for the person who typed it."""


_NONE = {"", "none", "null"}  # how an optional parameter's "no value" is written in a URL or on the CLI


@dataclass(frozen=True)
class Param:
    """One control: name (URL key and CLI flag), kind, range, step, default and help text.

    kind is one of ``float``, ``int``, ``bool``, ``choice`` (one of ``choices``), ``multi``
    (a subset of ``choices``, a comma-separated list in the URL), ``text`` (a string; ``min`` is its
    shortest length) and ``list`` (a list of non-empty strings, comma-separated in the URL).
    ``optional``: None is a value too (it means "the default of something else", e.g. the loss's own s);
    ``min_open`` / ``max_open``: the bound itself is excluded (lr > 0, dropout < 1).
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    format: str | None = None  # printf-style format for sliders, e.g. "%.2f"
    labels: dict[Any, str] = field(default_factory=dict)  # display names for choices
    widget: str = ""  # "" = the kind's usual control; "number" = a number box instead of a slider; "radio"
    optional: bool = False
    min_open: bool = False
    max_open: bool = False

    @property
    def title(self) -> str:
        return self.label or self.name

    def display(self, choice: Any) -> str:
        return self.labels.get(choice, str(choice))

    def coerce(self, value: Any) -> Any:
        """Convert and check a value (a Python value or URL/CLI text); raise ParamError if it is unusable."""
        k = self.kind
        if self.optional and (value is None or isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        try:
            if k == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in TRUE_WORDS | FALSE_WORDS:
                        raise ParamError(f"{self.title}: expected true/false, got {value!r}")
                    return low in TRUE_WORDS
                return bool(value)
            if k in ("float", "int"):
                if isinstance(value, bool):
                    raise ParamError(f"{self.title}: expected a number, got {value!r}")
                num = float(value)
                if not math.isfinite(num):
                    raise ParamError(f"{self.title}: {value!r} is not a finite number")
                if k == "int":
                    if num != int(num):
                        raise ParamError(f"{self.title}: expected a whole number, got {value!r}")
                    num = int(num)
                if not self.in_range(num):
                    closed = self.min is not None and self.max is not None and not (self.min_open or self.max_open)
                    allowed = f"{self.min}–{self.max}" if closed else self.bounds_text()
                    raise ParamError(f"{self.title}: {value} is outside the allowed range {allowed}")
                return num
            if k == "text":
                if value is None or isinstance(value, (list, tuple, dict)):
                    raise ParamError(f"{self.title}: expected text, got {value!r}")
                text = str(value)
                if self.min is not None and len(text.strip()) < self.min:
                    raise ParamError(f"{self.title}: must not be empty")
                return text
            if k == "list":
                items = value.split(",") if isinstance(value, str) else list(value)
                return [str(v).strip() for v in items if str(v).strip()]
            if k == "choice":
                for c in self.choices:
                    if value == c or str(value) == str(c):
                        return c
                raise ParamError(f"{self.title}: {value!r} is not one of {', '.join(map(str, self.choices))}")
            if k == "multi":
                if isinstance(value, str) and value.strip().lower() == "none":
                    return ()
                items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
                out = []
                for item in items:
                    match = [c for c in self.choices if item == c or str(item) == str(c)]
                    if not match:
                        raise ParamError(f"{self.title}: {item!r} is not one of {', '.join(map(str, self.choices))}")
                    if match[0] not in out:
                        out.append(match[0])
                return tuple(out)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ParamError):
                raise
            raise ParamError(f"{self.title}: cannot read {value!r} as {k}") from None
        raise ParamError(f"{self.title}: unknown parameter kind {k!r}")

    def in_range(self, num: float) -> bool:
        """Whether a number lies within ``min``/``max`` (each bound excluded when ``min_open``/``max_open``)."""
        lo, hi = self.min, self.max
        return not (lo is not None and (num < lo or self.min_open and num == lo)
                    or hi is not None and (num > hi or self.max_open and num == hi))

    def bounds_text(self) -> str:
        """The allowed range in words: ``from 1 to 64``, ``in [0, 1)``, ``> 0``, ``>= 2`` ("" if unbounded)."""
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            if self.min_open or self.max_open:
                return f"in {'(' if self.min_open else '['}{lo:g}, {hi:g}{')' if self.max_open else ']'}"
            return f"from {lo:g} to {hi:g}"
        if lo is not None:
            return f"{'>' if self.min_open else '>='} {lo:g}"
        return f"{'<' if self.max_open else '<='} {hi:g}" if hi is not None else ""

    def requirement(self) -> str:
        """What a valid value is, in words, e.g. ``an integer >= 2`` or ``true or false``."""
        bounds = self.bounds_text()
        what = {
            "bool": "true or false",
            "int": f"an integer {bounds}".strip(),
            "float": bounds or "a number",
            "text": "a non-empty text" if self.min else "a text",
            "list": "a list of non-empty texts",
            "choice": f"one of {', '.join(map(str, self.choices))}",
            "multi": f"a list of {', '.join(map(str, self.choices))}",
        }.get(self.kind, self.kind)
        return f"{what} or null" if self.optional else what

    def check(self, value: Any) -> Any:
        """Strictly check a typed value, as a JSON file holds it: text is never read as a number or a flag,
        and the message names the key (``lr must be > 0, got -1``), since that is what the user wrote."""
        if value is None and self.optional:
            return None
        k = self.kind
        if k == "choice":
            if value in self.choices:
                return value
            raise ParamError(f"{self.name} {value!r} is unknown; choose one of {', '.join(map(str, self.choices))}")
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = {
            "bool": isinstance(value, bool),
            "int": number and isinstance(value, int) and self.in_range(value),
            "float": number and self.in_range(value),
            "text": isinstance(value, str) and len(value.strip()) >= (self.min or 0),
            "list": isinstance(value, list) and all(isinstance(v, str) and v for v in value),
            "multi": isinstance(value, list | tuple) and all(v in self.choices for v in value),
        }.get(k, False)
        if not ok:
            raise ParamError(f"{self.name} must be {self.requirement()}, got {value!r}")
        return float(value) if k == "float" else tuple(value) if k == "multi" else value

    def to_text(self, value: Any) -> str:
        """The URL/CLI form of a value; :meth:`coerce` reads it back to the same value."""
        if value is None and self.optional:
            return "none"
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind in ("multi", "list"):
            return ",".join(map(str, value))
        if self.kind == "float":
            return repr(float(value))
        return str(value)


@dataclass(frozen=True)
class Spec:
    """An ordered set of :class:`Param` with the operations every page and the CLI share."""

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate parameter names in spec: {names}")

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __contains__(self, name: str) -> bool:
        return any(p.name == name for p in self.params)

    def __iter__(self):
        return iter(self.params)

    def __add__(self, other: Spec) -> Spec:
        return Spec(self.params + other.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def with_defaults(self, **defaults: Any) -> Spec:
        """A copy with other default values (for example a lesson's low-dimensional presets)."""
        return Spec(tuple(replace(p, default=defaults.get(p.name, p.default)) for p in self.params))

    def validate(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce every value; missing ones take the default. Raises ParamError listing all problems."""
        out, errors = {}, []
        for p in self.params:
            try:
                out[p.name] = p.coerce(values[p.name]) if p.name in values else p.default
            except ParamError as exc:
                errors.append(str(exc))
        if errors:
            raise ParamError("; ".join(errors))
        return out

    def check(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """:meth:`Param.check` on every value (missing ones take the default): the values that passed, and one
        message per key that did not (every problem, for a file the user wrote).  Never raises."""
        good, problems = {}, {}
        for p in self.params:
            try:
                good[p.name] = p.check(values[p.name]) if p.name in values else p.default
            except ParamError as exc:
                problems[p.name] = str(exc)
        return good, problems

    def from_query(self, query: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Read URL parameters; a bad value falls back to its default and adds a notice (never raises)."""
        values, notices = self.defaults(), []
        for p in self.params:
            if p.name not in query:
                continue
            raw = query[p.name]
            if isinstance(raw, list):  # st.query_params.to_dict() keeps the last; be lenient with lists
                raw = raw[-1] if raw else ""
            try:
                values[p.name] = p.coerce(raw)
            except ParamError as exc:
                notices.append(f"{exc} — using the default {p.to_text(p.default)}.")
        return values, notices

    def to_query(self, values: Mapping[str, Any]) -> dict[str, str]:
        """URL parameters for values: every parameter is written, so a shared link is exact."""
        return {p.name: p.to_text(values.get(p.name, p.default)) for p in self.params}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One ``--flag`` per parameter (dashes for underscores), defaulting to the spec's default."""
        for p in self.params:
            flag = "--" + p.name.replace("_", "-")
            help_text = (p.help or p.title) + f" (default: {p.to_text(p.default)})"
            if p.kind == "bool":
                parser.add_argument(flag, dest=p.name, default=None, action=argparse.BooleanOptionalAction,
                                    help=help_text)
            elif p.kind == "choice":
                parser.add_argument(flag, dest=p.name, default=None, choices=[str(c) for c in p.choices],
                                    help=help_text)
            elif p.kind == "multi":
                parser.add_argument(flag, dest=p.name, default=None, type=str, metavar="A,B,...|none",
                                    help=help_text + f"; choose from {', '.join(map(str, p.choices))}")
            else:
                parser.add_argument(flag, dest=p.name, default=None, type=str, help=help_text)

    def from_namespace(self, ns: argparse.Namespace) -> dict[str, Any]:
        """Values from parsed CLI flags (validated; raises ParamError with every problem)."""
        given = {p.name: getattr(ns, p.name) for p in self.params if getattr(ns, p.name, None) is not None}
        return self.validate(given)

    def subset(self, names: Iterable[str]) -> Spec:
        keep = set(names)
        return Spec(tuple(p for p in self.params if p.name in keep))


# ---------------------------------------------------------------------------------------------
# The loss parameters shared by every lesson, declared with their ranges in arcface_viz.losses
# (LOSS_PARAMS).  Ranges are the ones the UI allows; the loss library is tested to give finite losses
# and gradients over all of them.

LOSS_SPEC = Spec((
    Param("loss", "choice", "arcface", "Loss", "Which member of the margin family to use.",
          choices=tuple(LOSSES), labels={k: v.label for k, v in LOSSES.items()}),
    *(Param(p.name, p.kind, p.default, p.label, p.help, min=p.min, max=p.max, step=p.step, format=p.format)
      for p in LOSS_PARAMS.values()),
))


# ---------------------------------------------------------------------------------------------
# Lesson specs.  Each lesson's page reads/writes exactly these names in its URL.


def _fig4b_choices() -> tuple[tuple[str, ...], dict[str, str]]:
    from .geometry import FIG4B_CURVES

    return tuple(c.key for c in FIG4B_CURVES), {c.key: c.label for c in FIG4B_CURVES}


_FIG4B_KEYS, _FIG4B_LABELS = _fig4b_choices()
CLASS_COUNTS = (2, 8, 10, 100, 1000, 10575, 85742)  # 10,575 = CASIA-WebFace, 85,742 = MS1MV2 identities

CURVES_SPEC = Spec((
    Param("curves", "multi", _FIG4B_KEYS, "Paper curves (Fig. 4b)", "The presets of the paper's Fig. 4(b).",
          choices=_FIG4B_KEYS, labels=_FIG4B_LABELS),
    Param("custom", "bool", True, "Your curve", "Draw cos(m1·θ + m2) − m3 with the sliders below."),
    *(LOSS_SPEC.subset(("m1", "m2", "m3")).with_defaults(m1=1.0, m2=0.3, m3=0.1)),
    Param("full_range", "bool", False, "Full range 0°–180°",
          "Show where cos(θ + m) turns back, beyond the paper's 20°–100°."),
    Param("monotonic", "bool", False, "Training curve", "Draw the monotonic extension the loss trains with."),
    *(LOSS_SPEC.subset(("s",)).with_defaults(s=64.0)),
    Param("classes", "choice", 10575, "number of classes n", "Classes in the softmax denominator.",
          choices=CLASS_COUNTS),
))

FIG5_LOSSES = ("softmax", "norm_softmax", "sphereface", "cosface", "arcface", "combined")
MARGINS_SPEC = Spec((
    Param("loss", "choice", "arcface", "Loss", "Which loss's two-class decision margin to draw (Fig. 5).",
          choices=FIG5_LOSSES, labels={k: LOSSES[k].label for k in FIG5_LOSSES}),
    *LOSS_SPEC.subset(("m1", "m2", "m3")).with_defaults(m1=1.0, m2=0.5, m3=0.0),
    Param("phi", "float", 90.0, "angle between W1 and W2 (°)", "The angle φ between the two class centres.",
          min=5.0, max=180.0, step=1.0, format="%.0f°"),
    Param("bias", "float", 0.0, "b1 − b2 (Softmax)", "Softmax's bias difference shifts its boundary line.",
          min=-1.5, max=1.5, step=0.05, format="%.2f"),
    Param("norm_ratio", "float", 1.0, "‖W2‖ / ‖W1‖ (Softmax)", "Unequal weight norms tilt Softmax's boundary.",
          min=0.25, max=4.0, step=0.05, format="%.2f"),
))


def _toy_choices() -> tuple[tuple[str, ...], dict[str, str]]:
    from toy_data import TOY_DATASETS

    return tuple(TOY_DATASETS), {k: v.label for k, v in TOY_DATASETS.items()}


_TOY_KEYS, _TOY_LABELS = _toy_choices()
TOY_SPEC = Spec((
    Param("dataset", "choice", "fig3", "Data set", "Which toy data set to learn.", choices=_TOY_KEYS,
          labels=_TOY_LABELS),
    Param("classes", "int", 8, "classes", "Number of classes (identities).", min=2, max=12, step=1),
    Param("samples", "int", 200, "samples per class", "The paper's Fig. 3 uses 1,500 per identity.",
          min=20, max=1500, step=10),
    Param("noise", "float", 0.0, "noise", "Gaussian jitter (fig3) or spread of each class in input space.",
          min=0.0, max=2.0, step=0.01, format="%.2f"),
    Param("seed", "int", 0, "seed", "Same seed, same data, same initial weights, same run.", min=0, max=99999,
          step=1, widget="number"),
    Param("dim", "choice", 2, "embedding dimension", "2: the unit circle; 3: the sphere.", choices=(2, 3),
          widget="radio"),
    *LOSS_SPEC.with_defaults(**LOSSES["arcface"].low_dim),
    Param("optimizer", "choice", "adam", "optimizer", choices=("adam", "sgd"), widget="radio"),
    Param("lr", "float", 0.01, "learning rate", "Step size of the optimizer; applies at the next step.",
          min=0.0005, max=0.5, step=0.0005, format="%.4f"),
    Param("warmup", "int", 0, "margin warm-up (steps)", "Ramp the margin from 0 over this many steps.",
          min=0, max=2000, step=50),
    Param("steps_per_frame", "int", 20, "steps per frame", "Optimizer steps between two redraws.",
          min=1, max=200, step=1),
    Param("compare", "bool", False, "Compare two losses (Fig. 3)",
          "Train a second loss side by side: same data, seed and initial weights."),
    Param("loss_b", "choice", "softmax", "second loss", "The loss drawn on the left in compare mode.",
          choices=tuple(LOSSES), labels={k: v.label for k, v in LOSSES.items()}),
))

#: what a running lesson takes between steps (a loss parameter, the learning rate, the warm-up, the steps per frame:
#: training.LIVE_SETTINGS in spec names); any other change needs a Reset.  Every lesson page uses this list.
LIVE_KEYS = (*PARAM_NAMES, "lr", "warmup", "steps_per_frame")
