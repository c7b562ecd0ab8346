"""Sweep maps: which s and m?  A grid of small models trained at once, each cell coloured by what came out.

The question users of these losses ask most is how to choose the scale s and the margin m.  A sweep answers it
with a map: two parameters on the axes (any two of the loss's parameters, the embedding dimension, the number of
classes or the learning rate), each with a list of values; one small model per cell (and per seed), trained for
the same budget of steps; per cell the test accuracy, the verification accuracy on pairs of test samples, the
Table-3 angles W-EC, Intra1 and Inter1, the final loss and a "did not train" flag.

Every cell is a run of a lesson that already exists, with exactly the settings of its URL: a toy data set is the
live toy lesson (:data:`~arcface_viz.params.TOY_SPEC`, trained by :func:`~arcface_viz.training.build_toy_trainer`,
as ``arcface-viz toy`` does), an image data set the MNIST lesson (:data:`~arcface_viz.image_training.MNIST_SPEC`,
:func:`~arcface_viz.image_training.build_image_trainer`).  :meth:`SweepResult.link` gives the lesson's query, so
a click on a cell reopens that run.

How the grid advances is pluggable (``advance`` of :func:`run_sweep`): by default the trainers that
:mod:`arcface_viz.batched` can stack are advanced as one batched model per group, the others one by one.

Measured per run (:func:`measure`):

* ``test_acc``: accuracy on the test split (the whole test set for images);
* ``verification_accuracy``: the LFW protocol (:func:`~arcface_viz.stats.verification_accuracy`, 10 folds) on
  balanced pairs of test samples (:func:`~arcface_viz.stats.verification_pairs`, at most 6,000);
* ``W-EC``, ``Intra1``, ``Inter1``: :func:`~arcface_viz.stats.angle_statistics` in degrees, as the ``toy`` and
  ``mnist`` commands report them;
* ``final_loss``: the mean training loss over the last min(100, steps) steps (the ``toy`` command's);
* ``trained``: False, with a ``reason``, when a loss or a weight is NaN or infinite, the loss did not fall below
  :data:`LOSS_FALL` of its value at step 0, or the test accuracy is within :data:`CHANCE_BAND` of chance.

And per cell, from geometry alone: ``margin_fits``, False where the margin cannot fit between neighbouring
centres (:func:`~arcface_viz.geometry.margin_fit_warning`): the theory line drawn over the map.

Same settings, same map: results are deterministic per :class:`SweepConfig`, so :class:`SharedSweeps` keeps them
for every visitor of a server (one training per settings, whoever asks first; the others wait for it).
"""

from __future__ import annotations

import atexit
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import numpy as np

from .geometry import margin_fit_warning
from .losses import LOSSES, loss_margins
from .params import LOSS_SPEC, TOY_SPEC, Param, ParamError, Spec

# ---------------------------------------------------------------------------------------------------------------
# What a cell reports

#: metric key -> (label, hover format, higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "test_acc": ("test accuracy", ".1%", True),
    "verification_accuracy": ("verification accuracy (pairs)", ".1%", True),
    "W-EC": ("W-EC (°)", ".1f", False),
    "Intra1": ("Intra1 (°)", ".1f", False),
    "Inter1": ("Inter1 (°)", ".1f", True),
    "final_loss": ("final loss", ".3f", False),
}
LOSS_FALL = 0.95  # "the loss fell": its last-100-steps mean is below this fraction of its value at step 0
CHANCE_BAND = 0.1  # "at chance": test accuracy ≤ chance + this fraction of the way from chance to 100 %
VERIFICATION_PAIRS = 6000
FINAL_LOSS_STEPS = 100  # the toy command reports the mean loss of its last 100 steps

# ---------------------------------------------------------------------------------------------------------------
# The lessons a cell can be a run of


@dataclass(frozen=True)
class Lesson:
    """A lesson whose runs a sweep trains: its parameter spec (the cell's URL), its config class, its page and its
    data sets."""

    name: str  # "toy" | "image"
    page: str  # the page file
    url_path: str
    page_key: str  # the page's key for its state (pages/_ui.py)
    datasets: tuple[str, ...]

    @property
    def spec(self) -> Spec:
        if self.name == "toy":
            return TOY_SPEC
        from .image_training import MNIST_SPEC

        return MNIST_SPEC

    @property
    def config_class(self) -> type:
        """:class:`~arcface_viz.training.ToyConfig` or :class:`~arcface_viz.image_training.ImageConfig`."""
        if self.name == "toy":
            from .training import ToyConfig

            return ToyConfig
        from .image_training import ImageConfig

        return ImageConfig

    def loss_defaults(self, loss: str) -> dict[str, Any]:
        """The loss parameters this lesson starts a loss from (low-dimensional; s = 12 for images)."""
        return self.config_class.default_loss_params(loss)

    def dataset_defaults(self, dataset: str) -> dict[str, Any]:
        """The settings that suit a data set, in this lesson's spec names."""
        return self.config_class.dataset_defaults(dataset)

    def config(self, values: Mapping[str, Any]):
        """Spec values -> the lesson's config, as its page builds it."""
        return self.config_class.from_values(values)

    def data_key(self, values: Mapping[str, Any]) -> tuple:
        """The settings that decide the data set: runs with equal keys share one copy of it."""
        if self.name == "toy":
            return tuple(values[k] for k in ("dataset", "classes", "samples", "noise", "seed"))
        return tuple(values[k] for k in ("dataset", "max_train", "seed"))

    def load_data(self, values: Mapping[str, Any]):
        return self.config(values).resolved().load_data()

    def build(self, values: Mapping[str, Any], data):
        """A trainer for one cell and seed, on shared ``data``: exactly the lesson page's run."""
        return self.config(values).build(data=data)


def _toy_datasets() -> tuple[str, ...]:
    from toy_data import TOY_DATASETS

    return tuple(TOY_DATASETS)


def _image_datasets() -> tuple[str, ...]:
    from .image_training import IMAGE_DATASETS

    return tuple(IMAGE_DATASETS)


TOY = Lesson("toy", "pages/toy_training.py", "toy_training", "toy-training", _toy_datasets())
IMAGE = Lesson("image", "pages/mnist.py", "mnist", "mnist", _image_datasets())
LESSONS = (TOY, IMAGE)
DATASETS = TOY.datasets + IMAGE.datasets


def lesson_of(dataset: str) -> Lesson:
    for lesson in LESSONS:
        if dataset in lesson.datasets:
            return lesson
    raise ParamError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------------------------------
# Axes

#: settings other than the loss's parameters that may be an axis (the image lessons have no "classes")
EXTRA_AXES = ("dim", "classes", "lr")
MAX_AXIS_VALUES = 12


def axis_names(dataset: str, loss: str) -> tuple[str, ...]:
    """What may go on an axis: the loss's numeric parameters, then the embedding dimension, the number of classes
    (toy data sets) and the learning rate."""
    lesson = lesson_of(dataset)
    own = tuple(p for p in LOSSES[loss].params if LOSS_SPEC[p].kind in ("float", "int"))
    return own + tuple(n for n in EXTRA_AXES if n in lesson.spec)


def axis_label(name: str) -> str:
    """A short axis title: the parameter's name with what it means (``s (scale)``, ``m2 (additive angle, rad)``)."""
    labels = {"dim": "embedding dimension", "classes": "number of classes", "lr": "learning rate",
              "s": "s (scale)"}
    if name in labels:
        return labels[name]
    return LOSS_SPEC[name].title if name in LOSS_SPEC else name


@dataclass(frozen=True)
class Axis:
    """One axis of the map: a parameter and its values, in the order drawn."""

    name: str
    values: tuple[Any, ...]

    def text(self) -> str:
        """``s=2,4,8`` (what :func:`parse_axis` reads)."""
        return f"{self.name}=" + ",".join(_fmt_value(v) for v in self.values)


def _fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_axis(text: str, dataset: str, loss: str, max_values: int = MAX_AXIS_VALUES) -> Axis:
    """``"s=2,4,8,16"`` -> Axis("s", (2.0, 4.0, 8.0, 16.0)); every value checked against the lesson's range.

    Raises ParamError with a message for the person who typed it."""
    if not isinstance(text, str) or "=" not in text:
        raise ParamError(f"an axis is written NAME=V1,V2,…, e.g. s=2,4,8; got {text!r}")
    name, _, rest = text.partition("=")
    name = name.strip()
    allowed = axis_names(dataset, loss)
    if name not in allowed:
        why = "" if name not in EXTRA_AXES else f" (the {lesson_of(dataset).name} lessons have no {name!r})"
        raise ParamError(f"{name!r} cannot be an axis for {LOSSES[loss].label} on {dataset}{why}; "
                         f"choose one of {', '.join(allowed)}")
    items = [v.strip() for v in rest.split(",") if v.strip()]
    if not items:
        raise ParamError(f"axis {name}: give at least one value, e.g. {name}=1,2")
    if len(items) > max_values:
        raise ParamError(f"axis {name}: at most {max_values} values, got {len(items)}")
    param = _axis_param(dataset, name)
    values = []
    for item in items:
        v = param.coerce(item)
        values.append(v)
    if len(set(values)) != len(values):
        raise ParamError(f"axis {name}: a value is repeated in {rest.strip()!r}")
    return Axis(name, tuple(values))


def _axis_param(dataset: str, name: str) -> Param:
    """The lesson's control for ``name`` (its range), with a readable name in messages."""
    p = lesson_of(dataset).spec[name]
    if p.kind == "choice":  # dim: 2 or 3
        return p
    return replace(p, label=f"axis {name}")


# ---------------------------------------------------------------------------------------------------------------
# Settings

#: the other settings a sweep may fix (by lesson-spec name): the loss's parameters and these
FIXED = ("dim", "classes", "lr", "optimizer")


@dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a map: data set, loss, two axes, a budget in steps, the seeds, and other settings
    that differ from the lesson's defaults (``fixed``: (name, value) pairs in the lesson spec's names).

    Frozen and hashable: the key of :class:`SharedSweeps`.
    """

    dataset: str
    loss: str
    x: Axis
    y: Axis
    steps: int
    seeds: tuple[int, ...] = (0,)
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def lesson(self) -> Lesson:
        return lesson_of(self.dataset)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) = (len(y), len(x))."""
        return len(self.y.values), len(self.x.values)

    def base_values(self) -> dict[str, Any]:
        """The lesson's values every cell starts from: its defaults, the data set's and the loss's, then ``fixed``."""
        lesson = self.lesson
        values = lesson.spec.defaults()
        values.update(lesson.dataset_defaults(self.dataset))
        values.update(dataset=self.dataset, loss=self.loss)
        values.update(lesson.loss_defaults(self.loss))
        values.update(dict(self.fixed))
        if lesson.name == "image" and values.get("max_train") is None:
            values["max_train"] = lesson.spec["max_train"].default
        return values

    def cell_values(self, ix: int, iy: int, seed: int | None = None) -> dict[str, Any]:
        """The lesson's values of cell (column ix, row iy), for ``seed`` (default: the first seed)."""
        values = self.base_values()
        values[self.x.name] = self.x.values[ix]
        values[self.y.name] = self.y.values[iy]
        values["seed"] = self.seeds[0] if seed is None else seed
        return values

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, every default filled in (``base`` are the values shared by every cell)."""
        base = self.base_values()
        for k in (self.x.name, self.y.name, "seed"):
            base.pop(k, None)
        return {"dataset": self.dataset, "loss": self.loss, "lesson": self.lesson.url_path,
                "x": {"name": self.x.name, "values": list(self.x.values)},
                "y": {"name": self.y.name, "values": list(self.y.values)},
                "steps": self.steps, "seeds": list(self.seeds), "base": base}


def make_config(dataset: str, loss: str, x: str | Axis, y: str | Axis, steps: int, seeds: Iterable[int] = (0,),
                fixed: Mapping[str, Any] | None = None, limits: SweepLimits | None = None) -> SweepConfig:
    """A checked :class:`SweepConfig` (axes as ``"s=2,4,8"`` text or :class:`Axis`); ParamError lists problems.

    ``fixed`` values the loss does not use are dropped (as the lessons drop them); the others are checked against
    the lesson's ranges, as are the axes, the steps and the seeds, and ``limits`` (:func:`limits` by default)."""
    lim = limits or sweep_limits()
    lesson = lesson_of(dataset)
    if loss not in LOSSES:
        raise ParamError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if dataset not in lim.datasets:
        raise ParamError(f"data set {dataset!r} is not offered here; choose one of {', '.join(lim.datasets)}")
    errors = []
    axes = []
    for which, a in (("x", x), ("y", y)):
        try:
            axes.append(a if isinstance(a, Axis) else parse_axis(a, dataset, loss, lim.max_axis_values))
        except ParamError as exc:
            errors.append(f"{which}: {exc}")
    if len(axes) == 2 and axes[0].name == axes[1].name:
        errors.append(f"x and y are both {axes[0].name!r}: choose two different parameters")
    max_steps = lim.max_steps[lesson.name]
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= max_steps:
        errors.append(f"steps must be a whole number from 1 to {max_steps:,}, got {steps!r}")
    seeds = tuple(seeds)
    seed_param = lesson.spec["seed"]
    try:
        seeds = tuple(seed_param.coerce(s) for s in seeds)
    except ParamError as exc:
        errors.append(str(exc))
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) > lim.max_seeds:
        errors.append(f"give 1 to {lim.max_seeds} different seeds, got {list(seeds)}")
    kept = {}
    for name, value in (fixed or {}).items():
        if name in FIXED and name not in lesson.spec:
            errors.append(f"the {lesson.name} lessons have no setting {name!r}")
        elif name not in FIXED and (name not in LOSS_SPEC or name == "loss"):
            errors.append(f"{name!r} cannot be set in a sweep; choose from {', '.join((*FIXED, *LOSSES[loss].params))}")
        elif name in FIXED or name in LOSSES[loss].params:  # parameters the loss does not use are dropped
            try:
                kept[name] = lesson.spec[name].coerce(value)
            except ParamError as exc:
                errors.append(str(exc))
    if errors:
        raise ParamError("; ".join(errors))
    xa, ya = axes
    base = SweepConfig(dataset, loss, xa, ya, steps, seeds).base_values()
    # only what differs from the lesson's defaults: equal maps get equal configs (the key of SharedSweeps)
    kept = {k: v for k, v in kept.items() if k not in (xa.name, ya.name) and base.get(k) != v}
    cfg = SweepConfig(dataset, loss, xa, ya, steps, seeds, tuple(sorted(kept.items())))
    cells = len(xa.values) * len(ya.values)
    if cells > lim.max_cells or cells * len(seeds) > lim.max_runs:
        raise ParamError(f"{cells} cells × {len(seeds)} seed(s) is more than this app trains at once "
                         f"(at most {lim.max_cells} cells and {lim.max_runs} runs)")
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Limits (the hosted app trains smaller maps; its results are shared by every visitor)


@dataclass(frozen=True)
class SweepLimits:
    """How big a map may be: values per axis, cells, runs (cells × seeds), seeds, steps per lesson, data sets."""

    max_axis_values: int
    max_cells: int
    max_runs: int
    max_seeds: int
    max_steps: dict[str, int]
    datasets: tuple[str, ...]
    notice: str = ""


LOCAL_LIMITS = SweepLimits(max_axis_values=MAX_AXIS_VALUES, max_cells=144, max_runs=288, max_seeds=5,
                           max_steps={"toy": 5000, "image": 3000}, datasets=DATASETS)
HOSTED_LIMITS = SweepLimits(
    max_axis_values=6, max_cells=36, max_runs=72, max_seeds=2, max_steps={"toy": 500, "image": 300},
    datasets=TOY.datasets + ("digits",),
    notice="The shared online app draws maps of at most 6 × 6 cells and 2 seeds, 500 steps on toy data and 300 "
           "on digits; a map is trained once and shared by everyone who asks for the same settings.")


def sweep_limits() -> SweepLimits:
    """HOSTED_LIMITS when the app is served to the public (ARCFACE_VIZ_HOSTED=1), else LOCAL_LIMITS."""
    from .settings import hosted

    return HOSTED_LIMITS if hosted() else LOCAL_LIMITS


# ---------------------------------------------------------------------------------------------------------------
# Presets: the folk rules


@dataclass(frozen=True)
class Preset:
    """A map that reproduces a rule of thumb: its settings, and the rule's curve over it (if it has one)."""

    key: str
    label: str
    dataset: str
    loss: str
    x: str
    y: str
    steps: int
    fixed: dict[str, Any] = field(default_factory=dict)
    rule: str | None = None  # "adacos": s = √2·ln(C − 1) over an axis of classes
    text: str = ""


PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("s_m2", "s × m2 for ArcFace on Fig. 3's data", "fig3", "arcface", "s=2,4,8,16,32,64",
           "m2=0,0.2,0.4,0.6,0.8,1", 500,
           text="ArcFace on the paper's Fig. 3 toy data in 2-D: where do the scale s and the additive angular "
                "margin m2 train, and where does the margin stop fitting between the eight identities?"),
    Preset("s_classes", "s against the number of classes (AdaCos)", "fig3", "norm_softmax", "classes=3,4,6,8,10,12",
           "s=1,2,4,8,16,32", 500, rule="adacos",
           text="Norm-Softmax (no margin) on Fig. 3's ring with 3 to 12 identities: too small an s cannot make the "
                "softmax confident. The curve is AdaCos's fixed scale √2·ln(C − 1)."),
    Preset("m2_dim", "m2 against the embedding dimension (2-D / 3-D)", "fig3", "arcface", "m2=0,0.2,0.4,0.6,0.8,1",
           "dim=2,3", 500, fixed={"classes": 12},
           text="Twelve identities embedded on the circle and on the sphere: the sphere leaves neighbouring centres "
                "further apart (at best 63.4° against 30°), so a larger margin still fits."),
)}


#: values an axis starts with when it is picked on the page
AXIS_VALUES = {"s": "2,4,8,16,32,64", "m1": "1,1.2,1.4,1.6,1.8,2", "m2": "0,0.2,0.4,0.6,0.8,1",
               "m3": "0,0.1,0.2,0.3,0.4,0.5", "m": "1,2,3,4", "lam": "0,1,5,20,100", "margin": "0,0.1,0.2,0.3,0.4,0.5",
               "dim": "2,3", "classes": "3,4,6,8,10,12", "lr": "0.001,0.003,0.01,0.03,0.1"}


def default_axis_values(name: str) -> str:
    """Comma-separated values for a new axis: :data:`AXIS_VALUES`, else six steps over the parameter's range."""
    if name in AXIS_VALUES:
        return AXIS_VALUES[name]
    p = LOSS_SPEC[name]
    values = np.linspace(p.min, p.max, 6)
    return ",".join(str(int(round(v))) if p.kind == "int" else f"{v:g}" for v in values)


def adacos_scale(num_classes: float) -> float:
    """AdaCos's fixed scale s = √2·ln(C − 1) (Zhang et al. 2019), for C > 2 classes."""
    return math.sqrt(2.0) * math.log(num_classes - 1.0)


def preset_matches(preset: Preset, config: SweepConfig) -> bool:
    """Whether ``config`` is the preset's map (data set, loss, the two axes and their values, the other settings;
    steps and seeds aside): only then does the preset's text describe it."""
    ref = preset_config(preset.key)
    return (config.dataset, config.loss, config.x, config.y, config.fixed) == \
        (ref.dataset, ref.loss, ref.x, ref.y, ref.fixed)


def preset_config(key: str, limits: SweepLimits | None = None) -> SweepConfig:
    p = PRESETS[key]
    return make_config(p.dataset, p.loss, p.x, p.y, p.steps, (0,), p.fixed, limits)


# ---------------------------------------------------------------------------------------------------------------
# The page's and the URL's parameters


def _axis_choices() -> tuple[str, ...]:
    from .losses import LOSS_PARAMS

    return tuple(n for n, p in LOSS_PARAMS.items() if p.kind in ("float", "int")) + EXTRA_AXES


def _dataset_labels() -> dict[str, str]:
    from toy_data import TOY_DATASETS

    from .image_training import DATASET_LABELS

    return {**{k: v.label for k, v in TOY_DATASETS.items()}, **DATASET_LABELS}


SWEEP_SPEC = Spec((
    Param("preset", "choice", "s_m2", "Preset", "Start from a map that reproduces a rule of thumb; picking one loads "
          "its settings.", choices=(*PRESETS, "custom"), labels={**{k: p.label for k, p in PRESETS.items()},
                                                                "custom": "(your own settings)"}),
    Param("dataset", "choice", "fig3", "Data set", "Toy data sets train the toy lesson's MLP; image data sets the "
          "MNIST lesson's CNN.", choices=DATASETS, labels=_dataset_labels()),
    LOSS_SPEC["loss"],
    Param("x", "choice", "s", "x axis (columns)", "The parameter that changes from column to column.",
          choices=_axis_choices(), labels={n: axis_label(n) for n in _axis_choices()}),
    Param("x_values", "text", AXIS_VALUES["s"], "x values", "Comma-separated values of the x axis.", min=1),
    Param("y", "choice", "m2", "y axis (rows)", "The parameter that changes from row to row.",
          choices=_axis_choices(), labels={n: axis_label(n) for n in _axis_choices()}),
    Param("y_values", "text", AXIS_VALUES["m2"], "y values", "Comma-separated values of the y axis.", min=1),
    Param("steps", "int", 500, "steps per model", "Optimizer steps of every model of the map.", min=50, max=5000,
          step=50),
    Param("seed", "int", 0, "seed", "The first seed: data, initial weights and batches.", min=0, max=99999, step=1,
          widget="number"),
    Param("seeds", "int", 1, "seeds per cell", "Train each cell with this many seeds (seed, seed + 1, …); the map "
          "shows their mean and the tooltip their spread.", min=1, max=LOCAL_LIMITS.max_seeds, step=1),
    TOY_SPEC["dim"],
    TOY_SPEC["classes"],
    TOY_SPEC["lr"],
    TOY_SPEC["optimizer"],
    *LOSS_SPEC.subset(n for n in LOSS_SPEC.names if n != "loss").with_defaults(**LOSSES["arcface"].low_dim),
    Param("metric", "choice", "test_acc", "Colour the map by", "Which number of each cell the colours show.",
          choices=tuple(METRICS), labels={k: v[0] for k, v in METRICS.items()}, widget="radio"),
))


def preset_values(key: str) -> dict[str, Any]:
    """The SWEEP_SPEC values a preset sets (the page loads them when the preset is picked)."""
    if key not in PRESETS:
        return {}
    p = PRESETS[key]
    (xn, xv), (yn, yv) = (a.split("=", 1) for a in (p.x, p.y))
    out = {"dataset": p.dataset, "loss": p.loss, "x": xn, "x_values": xv, "y": yn, "y_values": yv, "steps": p.steps,
           "seeds": 1, **lesson_values(p.dataset, p.loss)}
    out.update(p.fixed)
    return out


def lesson_values(dataset: str, loss: str) -> dict[str, Any]:
    """The fixed settings of SWEEP_SPEC as the lesson starts them for a data set and a loss (the page loads them
    when either changes)."""
    lesson = lesson_of(dataset)
    spec = lesson.spec
    out = {"dim": spec["dim"].default, "lr": spec["lr"].default, "optimizer": spec["optimizer"].default}
    out.update({k: v for k, v in lesson.dataset_defaults(dataset).items() if k in ("lr", "classes")})
    out.update(lesson.loss_defaults(loss))
    return out


def config_from_values(values: Mapping[str, Any], limits: SweepLimits | None = None) -> SweepConfig:
    """SWEEP_SPEC values (the page, the URL) -> a checked SweepConfig (ParamError says what is wrong)."""
    lesson = lesson_of(values["dataset"])
    loss = values["loss"]
    fixed = {k: values[k] for k in FIXED if k in lesson.spec}
    fixed.update({k: values[k] for k in LOSSES[loss].params if k in values})
    seeds = range(values["seed"], values["seed"] + values["seeds"])
    return make_config(values["dataset"], loss, f"{values['x']}={values['x_values']}",
                       f"{values['y']}={values['y_values']}", values["steps"], seeds, fixed, limits)


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class CellResult:
    """One cell: its axis values, each seed's numbers and their mean and spread over the seeds."""

    ix: int
    iy: int
    x: Any
    y: Any
    runs: list[dict[str, Any]]  # one per seed: METRICS keys, first_loss, trained, reason
    margin_fits: bool | None

    @property
    def trained(self) -> bool:
        return all(r["trained"] for r in self.runs)

    @property
    def reason(self) -> str | None:
        """Why it did not train (the first seed that did not), or None."""
        bad = [r for r in self.runs if not r["trained"]]
        if not bad:
            return None
        head = bad[0]["reason"]
        return head if len(self.runs) == 1 else f"{head} ({len(bad)} of {len(self.runs)} seeds)"

    def mean(self, metric: str) -> float | None:
        """The mean over the seeds with a finite value, or None."""
        vals = [r[metric] for r in self.runs if _finite(r.get(metric))]
        return float(np.mean(vals)) if vals else None

    def spread(self, metric: str) -> float | None:
        """The standard deviation over the seeds (ddof 0), or None with fewer than two finite values."""
        vals = [r[metric] for r in self.runs if _finite(r.get(metric))]
        return float(np.std(vals)) if len(vals) > 1 else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SweepResult:
    """A trained map: its settings, its cells (row by row, y outer), the seconds it took."""

    config: SweepConfig
    cells: list[CellResult]
    seconds: float
    num_classes: int

    def cell(self, ix: int, iy: int) -> CellResult:
        return self.cells[iy * len(self.config.x.values) + ix]

    def grid(self, metric: str) -> np.ndarray:
        """(rows, columns) of the metric's mean over seeds; NaN where there is no finite value."""
        ny, nx = self.config.shape
        out = np.full((ny, nx), np.nan)
        for c in self.cells:
            v = c.mean(metric)
            if v is not None:
                out[c.iy, c.ix] = v
        return out

    def trained_grid(self) -> np.ndarray:
        ny, nx = self.config.shape
        out = np.zeros((ny, nx), dtype=bool)
        for c in self.cells:
            out[c.iy, c.ix] = c.trained
        return out

    def fits_grid(self) -> np.ndarray | None:
        """(rows, columns) booleans: the margin fits between neighbouring centres; None for heads without one."""
        if any(c.margin_fits is None for c in self.cells):
            return None
        ny, nx = self.config.shape
        out = np.zeros((ny, nx), dtype=bool)
        for c in self.cells:
            out[c.iy, c.ix] = c.margin_fits
        return out

    def link(self, ix: int, iy: int) -> tuple[str, dict[str, str]]:
        """(page file, URL query) of the cell's run in its lesson, first seed: exactly its settings."""
        cfg = self.config
        lesson = cfg.lesson
        return lesson.page, lesson.spec.to_query(cfg.cell_values(ix, iy))

    def to_json(self) -> dict[str, Any]:
        """``{"settings", "cells", "seconds", "num_classes"}``; every cell has the two parameter values, the
        METRICS (means over seeds; null where none is finite), ``trained``, ``reason``, ``margin_fits``, and with
        several seeds the spread (standard deviation) of each metric and each seed's numbers."""
        cfg = self.config
        cells = []
        for c in self.cells:
            d: dict[str, Any] = {cfg.x.name: c.x, cfg.y.name: c.y}
            d.update({m: c.mean(m) for m in METRICS})
            d.update(trained=c.trained, reason=c.reason, margin_fits=c.margin_fits)
            if len(c.runs) > 1:
                d["spread"] = {m: c.spread(m) for m in METRICS}
                d["per_seed"] = [{"seed": s, **{k: _json_number(r.get(k)) for k in (*METRICS, "trained", "reason")}}
                                 for s, r in zip(cfg.seeds, c.runs, strict=True)]
            d["link"] = f"{cfg.lesson.url_path}?{urlencode(self.link(c.ix, c.iy)[1])}"
            cells.append(d)
        return {"settings": cfg.to_dict(), "cells": cells, "seconds": self.seconds, "num_classes": self.num_classes}


def summary(result: SweepResult) -> list[str]:
    """The sentences under a map, each from the map's own cells: how many did not train and where they lie
    against the theory line, and what the theory line is (the largest angle neighbouring centres can have)."""
    from .geometry import max_min_centre_angle

    cells = result.cells
    bad = [c for c in cells if not c.trained]
    out = []
    fits = result.fits_grid()
    if not bad:
        out.append(f"Every one of the {len(cells)} cells trained.")
    else:
        where = ""
        if fits is not None:
            beyond = sum(1 for c in bad if c.margin_fits is False)
            where = (" all of them beyond the theory line" if beyond == len(bad) else
                     " none of them beyond the theory line" if beyond == 0 else
                     f" {beyond} of them beyond the theory line")
            where = f":{where}"
        out.append(f"**{len(bad)} of {len(cells)} cells did not train** (grey, ✗){where}.")
    if fits is not None:
        cfg = result.config
        dims = sorted({int(cfg.cell_values(c.ix, c.iy)["dim"]) for c in cells})
        best = [max_min_centre_angle(result.num_classes, d) for d in dims]
        angles = " and ".join(f"{math.degrees(b):.1f}° apart in {d}-D" for b, d in zip(best, dims, strict=True)
                              if b is not None)
        n_out = int((~fits).sum())
        if n_out:
            out.append(f"Theory (dashed line): {result.num_classes} class centres can be at most {angles}; in "
                       f"{n_out} cell(s) the margin needs more than that before either of two neighbouring classes "
                       "can win between them (the swallow angle of Fig. 5).")
        else:
            out.append(f"Theory: {result.num_classes} class centres can be {angles}, and every margin of this "
                       "map fits between neighbouring centres (no dashed line).")
    return out


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------------------------
# Measuring one run


def verdict(first_loss: float, final_loss: float, test_acc: float | None, num_classes: int,
            finite: bool) -> str | None:
    """Why a run did not train, or None: NaN/inf, the loss did not fall, or accuracy at chance (module docstring)."""
    if not finite or not _finite(first_loss) or not _finite(final_loss):
        return "NaN or inf in the loss or the weights"
    if final_loss > LOSS_FALL * first_loss:
        return f"the loss did not fall ({first_loss:.3g} at step 0, {final_loss:.3g} at the end)"
    chance = 1.0 / num_classes
    if test_acc is not None and test_acc <= chance + CHANCE_BAND * (1.0 - chance):
        return f"accuracy at chance ({test_acc:.1%}; chance is {chance:.1%})"
    return None


def _weights_finite(trainer) -> bool:
    import torch

    tensors = [*trainer.model.parameters(), *trainer.loss_fn.parameters(), *trainer.loss_fn.buffers()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _verification(emb: np.ndarray, labels: np.ndarray) -> float | None:
    from . import stats

    try:
        a, b, same = stats.verification_pairs(labels, VERIFICATION_PAIRS, seed=0)
        return stats.verification_accuracy(emb[a], emb[b], same)[0]
    except ValueError:  # too few pairs, a zero embedding
        return None


def measure(trainer, first_loss: float, final_loss: float) -> dict[str, Any]:
    """One run's numbers (module docstring): the ``toy`` / ``mnist`` commands' test accuracy and Table-3 angles,
    the verification accuracy on test pairs, the final loss, and the verdict.  NaN never leaves this function:
    what cannot be measured is None."""

    num_classes = trainer.loss_fn.num_classes
    out: dict[str, Any] = dict.fromkeys(METRICS)
    out.update(first_loss=first_loss, final_loss=final_loss if _finite(final_loss) else None)
    finite = _weights_finite(trainer)
    test_acc = None
    if finite:
        image = hasattr(trainer, "full_test")
        if image:  # the mnist command's numbers: the whole test set, up to 10,000 training images
            from .image_training import report

            rep = report(trainer)
            test_acc = rep["test_acc"]
            angles = {k: rep[k] for k in ("W-EC", "Intra1", "Inter1")}
            emb_te, _ = trainer.test_predictions()
            y_te = trainer.y_test_all.cpu().numpy()
        else:  # the toy command's numbers
            train = trainer.embeddings("train")
            emb_te, y_te = trainer.embeddings("test") if trainer.has_test else (None, None)
            test_acc = trainer.snapshot().test_acc
            try:
                angles = trainer.report(train, (emb_te, y_te) if emb_te is not None else None)
            except ValueError:  # a class whose embeddings cancel out, a zero W_j
                angles = {}
        finite = all(np.isfinite(v) for v in (test_acc,) if v is not None) and (
            emb_te is None or bool(np.isfinite(emb_te).all()))
        if finite:
            out["test_acc"] = test_acc
            out.update({k: angles.get(k) if _finite(angles.get(k)) else None for k in ("W-EC", "Intra1", "Inter1")})
            if emb_te is not None:
                out["verification_accuracy"] = _verification(emb_te, y_te)
    reason = verdict(first_loss, final_loss, test_acc if finite else None, num_classes, finite)
    out.update(trained=reason is None, reason=reason)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Advancing a grid

Advance = Callable[..., list[Any]]  # advance(trainers, k, snapshot=True) -> a snapshot (or None) per trainer


def one_by_one(trainers: Sequence[Any], k: int, snapshot: bool = True) -> list[Any]:
    """Each trainer alone: ``[t.advance(k) for t in trainers]`` (the reference the batched path must equal)."""
    return [t.advance(k, snapshot) for t in trainers]


def default_advance() -> Advance:
    """The batched grid advance of :mod:`arcface_viz.batched` when it is there, else :func:`one_by_one`; on up
    to 4 cores, or on one in the hosted app (its other visitors need the rest)."""
    import functools
    import os

    from .settings import hosted

    try:
        from .batched import advance_grid
    except ImportError:
        return one_by_one
    return functools.partial(advance_grid, threads=1 if hosted() else max(1, min(4, os.cpu_count() or 1)))


def _chunks(steps: int, pieces: int = 10) -> list[int]:
    """Chunks of training between progress reports; the last is min(100, steps), the steps ``final_loss`` averages."""
    last = min(FINAL_LOSS_STEPS, steps)
    rest = steps - last
    size = max(last, math.ceil(steps / pieces))
    out = [size] * (rest // size) + ([rest % size] if rest % size else [])
    return [*out, last]


Progress = Callable[[float, str], None]


def _plan(config: SweepConfig) -> list[tuple[int, int, int]]:
    """(column, row, seed) of every run, row by row, the seeds of a cell together."""
    ny, nx = config.shape
    return [(ix, iy, seed) for iy in range(ny) for ix in range(nx) for seed in config.seeds]


def _train_runs(config: SweepConfig, plan: Sequence[tuple[int, int, int]], advance: Advance,
                progress: Progress | None = None, data: dict[tuple, Any] | None = None) -> list[dict[str, Any]]:
    """Build the runs of ``plan`` (data shared by runs with equal data settings), train them together with
    ``advance`` and measure each (:func:`measure`, plus ``num_classes``)."""
    lesson = config.lesson
    data = {} if data is None else data
    trainers = []
    for i, (ix, iy, seed) in enumerate(plan):
        values = config.cell_values(ix, iy, seed)
        key = lesson.data_key(values)
        if key not in data:
            data[key] = lesson.load_data(values)
        trainers.append(lesson.build(values, data[key]))
        if progress and i % 8 == 0:
            progress(0.0, f"building {len(plan)} models… ({i + 1}/{len(plan)})")
    first = [t.snapshot().loss for t in trainers]  # the loss on the training set at step 0
    done = 0
    for k in _chunks(config.steps):
        advance(trainers, k, snapshot=False)  # measure() takes the snapshot it needs at the end
        done += k
        if progress:
            progress(done / config.steps, f"trained {done:,} of {config.steps:,} steps of {len(plan)} models")
    if progress:
        progress(1.0, f"measuring {len(plan)} models…")
    return [{**measure(t, f, t.last_loss), "num_classes": t.loss_fn.num_classes}
            for t, f in zip(trainers, first, strict=True)]


_WORKER_DATA: dict[tuple, Any] = {}  # a worker process's data sets, kept between its runs


def _worker_run(config: SweepConfig, run: tuple[int, int, int]) -> dict[str, Any]:
    """One run in a worker process: exactly the run alone (its own trainer, :func:`one_by_one`)."""
    return _train_runs(config, [run], one_by_one, data=_WORKER_DATA)[0]


def default_workers(config: SweepConfig) -> int:
    """Processes for a map: image runs (a CNN step is kernel-bound, so G of them batched cost what G steps alone
    cost) train one run per process on up to two cores; toy runs batch in this process (their steps are
    overhead-bound).  ``ARCFACE_VIZ_SWEEP_WORKERS`` sets it; the hosted app trains in its own process only."""
    import os

    from .settings import hosted

    env = os.environ.get("ARCFACE_VIZ_SWEEP_WORKERS", "").strip()
    if env:
        return max(1, int(env))
    if hosted() or config.lesson.name != "image":
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _runs_in_processes(config: SweepConfig, plan: Sequence[tuple[int, int, int]], workers: int,
                       progress: Progress | None) -> list[dict[str, Any]]:
    """Every run of ``plan`` alone, ``workers`` at a time in fresh processes (spawned: safe beside the server's
    threads); results in plan order."""
    from concurrent.futures import as_completed

    out: list[dict[str, Any] | None] = [None] * len(plan)
    if progress:
        progress(0.0, f"{len(plan)} models, {workers} processes…")
    pool = _pool(workers)
    futures = {pool.submit(_worker_run, config, run): i for i, run in enumerate(plan)}
    for n, fut in enumerate(as_completed(futures), 1):
        out[futures[fut]] = fut.result()
        if progress:
            progress(n / len(plan), f"trained {n} of {len(plan)} models ({workers} processes)")
    return out  # type: ignore[return-value]


_POOL: list = []  # [(workers, ProcessPoolExecutor)]: kept, so a server's second map starts without spawning
_POOL_LOCK = threading.Lock()


def _pool(workers: int):
    """The process pool of ``workers`` spawned processes (made once, shut down when the interpreter exits)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _POOL_LOCK:
        if _POOL and _POOL[0][0] == workers and not getattr(_POOL[0][1], "_broken", False):
            return _POOL[0][1]
        if _POOL:
            _POOL.pop()[1].shutdown(wait=False, cancel_futures=True)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        if not _POOL_CLOSER:
            _POOL_CLOSER.append(atexit.register(_close_pool))
        _POOL.append((workers, pool))
        return pool


_POOL_CLOSER: list = []


def _close_pool() -> None:
    """Shut the pool down before the interpreter tears its modules down (else the executor's weakref callback
    runs against a half-dismantled multiprocessing module and prints an ignored exception at exit)."""
    with _POOL_LOCK:
        while _POOL:
            _POOL.pop()[1].shutdown(wait=True, cancel_futures=True)


def run_sweep(config: SweepConfig, *, advance: Advance | None = None, progress: Progress | None = None,
              workers: int | None = None) -> SweepResult:
    """Train every cell and seed of ``config`` for ``config.steps`` steps and measure them (module docstring).

    ``advance(trainers, k, snapshot=False)`` moves the whole grid k steps (default: :func:`default_advance`);
    ``workers`` > 1 trains the runs one by one in that many processes instead (default: :func:`default_workers`;
    an ``advance`` given wins); ``progress(fraction, text)`` is called as it goes."""
    t0 = time.perf_counter()
    plan = _plan(config)
    workers = (1 if advance is not None else default_workers(config)) if workers is None else workers
    if workers > 1 and len(plan) > 1:
        runs = _runs_in_processes(config, plan, min(workers, len(plan)), progress)
    else:
        runs = _train_runs(config, plan, advance or default_advance(), progress)
    ny, nx = config.shape
    n_seeds = len(config.seeds)
    num_classes = runs[0]["num_classes"]
    cells = []
    for c in range(nx * ny):
        iy, ix = divmod(c, nx)
        mine = [{k: v for k, v in r.items() if k != "num_classes"} for r in runs[c * n_seeds:(c + 1) * n_seeds]]
        cells.append(CellResult(ix, iy, config.x.values[ix], config.y.values[iy], mine,
                                margin_fits(config, config.cell_values(ix, iy), num_classes)))
    return SweepResult(config, cells, time.perf_counter() - t0, num_classes)


def margin_fits(config: SweepConfig, values: Mapping[str, Any], num_classes: int) -> bool | None:
    """Whether the cell's margin fits between neighbouring centres (geometry.margin_fit_warning is None); None for
    a head without a (m1, m2, m3) margin."""
    info = LOSSES[config.loss]
    if info.head != "cosine" or not {"m1", "m2", "m3"} & set(info.params):
        return None
    m1, m2, m3 = loss_margins(config.loss, values)
    return margin_fit_warning(num_classes, int(values["dim"]), m1, m2, m3) is None


# ---------------------------------------------------------------------------------------------------------------
# Sharing: one training per settings, whoever asks first


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.fraction, self.text = 0.0, "waiting…"
        self.result: SweepResult | None = None
        self.error: BaseException | None = None


class SharedSweeps:
    """Maps kept for every visitor of a server, keyed by their :class:`SweepConfig` (at most ``max_items``, the
    least recently used dropped first).  A map asked for while it trains is not trained again: the second caller
    waits for the first and sees its progress.  At most ``max_parallel`` different maps train at once (a map
    keeps the CPU busy; two at once only finish later); the others wait their turn and say so."""

    def __init__(self, max_items: int = 32, max_parallel: int = 1) -> None:
        self.max_items = max_items
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._lock = threading.Lock()
        self._done: OrderedDict[SweepConfig, SweepResult] = OrderedDict()
        self._jobs: dict[SweepConfig, _Job] = {}
        self.trainings = 0  # how many maps this cache has trained (tests count them)

    def get(self, config: SweepConfig) -> SweepResult | None:
        with self._lock:
            result = self._done.get(config)
            if result is not None:
                self._done.move_to_end(config)
            return result

    def run(self, config: SweepConfig, *, progress: Progress | None = None, advance: Advance | None = None,
            poll: float = 0.25) -> SweepResult:
        """The map of ``config``: kept, being trained by another caller (wait for it), or trained now."""
        with self._lock:
            if config in self._done:
                self._done.move_to_end(config)
                return self._done[config]
            job = self._jobs.get(config)
            mine = job is None
            if mine:
                job = self._jobs[config] = _Job()
                self.trainings += 1
        if not mine:
            while not job.done.wait(poll):
                if progress:
                    progress(job.fraction, job.text)
            if job.error is not None:
                raise job.error
            return job.result

        def report(fraction: float, text: str) -> None:
            job.fraction, job.text = fraction, text
            if progress:
                progress(fraction, text)

        try:
            while not self._slots.acquire(timeout=poll):
                report(0.0, "waiting for another map to finish training…")
            try:
                job.result = run_sweep(config, advance=advance, progress=report)
            finally:
                self._slots.release()
        except BaseException as exc:
            job.error = exc
            raise
        finally:
            with self._lock:
                self._jobs.pop(config, None)
                if job.result is not None:
                    self._done[config] = job.result
                    while len(self._done) > self.max_items:
                        self._done.popitem(last=False)
            job.done.set()
        return job.result


#: the server's maps (the page uses it: thirty visitors asking for one map train it once)
SHARED = SharedSweeps()
