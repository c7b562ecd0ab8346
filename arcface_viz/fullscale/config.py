"""The full-scale run config: one :class:`~arcface_viz.params.Spec`, :data:`RUN_SPEC`, for every key of a run.

A run's ``config.json`` holds the keys of :data:`RUN_SPEC` (insightface's arcface_torch names where they exist);
a dot nests a key, so ``data.root`` is ``{"data": {"root": ...}}`` in the file.  From that one list come

- :class:`TrainConfig` (with its groups :class:`DataConfig` and :class:`LossParams`): a dataclass with one field
  per key, which the trainer reads as ``cfg.lr`` or ``cfg.data.root``;
- :func:`config_errors`: every problem of a config, one message each, naming the key: each key's own check
  (kind, range, choices: :meth:`~arcface_viz.params.Param.check`), then the :data:`RULES` between keys, then
  the data paths;
- the launch form of the Training runs page (:func:`arcface_viz.fullscale.launch.launch_spec` draws every key
  but the free texts) and ``arcface-viz runs launch --set KEY=VALUE`` (:func:`set_key`; ``runs keys`` lists them).

**Adding a key**: append a :class:`~arcface_viz.params.Param` to :data:`RUN_SPEC` (name, kind, default, label,
help, range; ``optional=True`` when null means "someone else's default") and read ``cfg.<name>`` in the
trainer; a condition between keys is one more :class:`Rule`.  A config written before the key existed takes
its default, so old configs and presets load and resume unchanged.

The loss's parameters are :data:`~arcface_viz.params.LOSS_SPEC`'s: ``s, m1, m2, m3`` at the top (insightface's
scale and ``margin_list``), the others under ``loss_params``; null means the loss's paper value.  A new loss
parameter in LOSS_SPEC is a run-config key by itself (and a slider on the launch form).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..losses import make_loss
from ..params import LOSS_SPEC, Param, Spec
from .backbones import ALIASES, BACKBONES
from .files import atomic_write_text
from .partial_fc import supports

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # arcface_viz/configs: old --config paths keep working
AMP_MODES = ("none", "fp16", "bf16")
OPTIMIZERS = ("sgd", "adamw")
DATA_FORMATS = ("rec", "folder", "synthetic")
TOP_LEVEL_LOSS_KEYS = ("s", "m1", "m2", "m3", "interclass_filtering_threshold")  # arcface_torch's names; the rest:
# loss_params.*
LR_SCHEDULES = ("poly_scheduler", "polynomial_lr_warmup")  # arcface_torch's PolyScheduler, PolynomialLRWarmup


class ConfigError(ValueError):
    """A config or resume problem the user can fix; the message says what and where."""


def loss_key(name: str) -> str:
    """The run-config key of a loss parameter of LOSS_SPEC: ``s`` stays ``s``, ``margin`` is ``loss_params.margin``."""
    return name if name in TOP_LEVEL_LOSS_KEYS else f"loss_params.{name}"


#: loss parameter (make_loss's keyword) -> its run-config key
LOSS_KEYS = {p.name: loss_key(p.name) for p in LOSS_SPEC if p.name != "loss"}


def _loss_param(p: Param) -> Param:
    """A LOSS_SPEC parameter as a run-config key: null = the loss's paper value.  A file takes any value the
    loss accepts, as it always did (the rule :func:`_loss_builds` asks make_loss), not only the lesson
    sliders' range, which the launch form keeps: only s and m1 must be > 0."""
    positive = p.name in ("s", "m1")
    return replace(p, name=LOSS_KEYS[p.name], default=None, optional=True, min=0.0 if positive else None,
                   max=None, min_open=positive)

RUN_SPEC = Spec((
    Param("network", "choice", "iresnet50", "Backbone", "IResNet (the paper's ResNet with the improved residual "
          "unit) or MobileFaceNet; 112×112 in. insightface's r50, mbf … are accepted too.",
          choices=(*BACKBONES, *ALIASES), labels={k: f"{k} ({v})" for k, v in ALIASES.items()}),
    Param("embedding_size", "int", 512, "embedding size", "Dimension of the BN-Dropout-FC-BN output (512 in "
          "the paper).", min=2),
    Param("dropout", "float", 0.0, "dropout", "Dropout before the embedding layer (insightface: 0).",
          min=0.0, max=1.0, max_open=True, step=0.05, format="%.2f"),
    LOSS_SPEC["loss"],
    *(_loss_param(p) for p in LOSS_SPEC if p.name != "loss"),
    Param("sample_rate", "float", 1.0, "Partial FC sample rate", "Fraction of negative class centres used per "
          "step (1 = all; insightface's PFC-0.1 is 0.1).", min=0.0, max=1.0, min_open=True, step=0.05,
          format="%.2f"),
    Param("amp", "choice", "none", "mixed precision", "fp16 (with a gradient scaler) or bf16.", choices=AMP_MODES),
    Param("batch_size", "int", 128, "batch size per process", "Samples per GPU (process) and step; insightface "
          "uses 128. BatchNorm needs at least 2.", min=2),
    Param("optimizer", "choice", "sgd", "optimizer", "SGD (with momentum) or AdamW.", choices=OPTIMIZERS),
    Param("lr", "float", 0.1, "learning rate", "Peak learning rate after warm-up (0.1 for SGD with 8×128 in "
          "insightface).", min=0.0, min_open=True, step=0.001, format="%.6f"),
    Param("momentum", "float", 0.9, "momentum (SGD)", min=0.0, max=1.0, max_open=True, step=0.01, format="%.2f"),
    Param("weight_decay", "float", 5e-4, "weight decay", min=0.0, step=0.0001, format="%.6f"),
    Param("num_epoch", "int", 20, "epochs", "Passes over the training set.", min=1),
    Param("warmup_epoch", "float", 0.0, "warm-up epochs", "Linear warm-up before the polynomial decay; must be "
          "below the epochs.", min=0.0, step=0.5, format="%.2f"),
    Param("lr_schedule", "choice", "poly_scheduler", "lr schedule", "Warm-up and decay as arcface_torch's "
          "PolyScheduler (power 2; its code until April 2023, which trained its model zoo) or its "
          "PolynomialLRWarmup (power 1, since April 2023).", choices=LR_SCHEDULES,
          labels={"poly_scheduler": "PolyScheduler (power 2)", "polynomial_lr_warmup": "PolynomialLRWarmup "
                  "(power 1)"}),
    Param("max_steps", "int", None, "max steps (0 = all epochs)", "Stop after this many steps (the lr schedule "
          "decays over them); null = all epochs.", min=1, optional=True),
    Param("data.format", "choice", "synthetic", "data format", "insightface RecordIO (train.rec/idx/property), an "
          "image folder (one sub-folder per identity) or random tensors for speed tests.", choices=DATA_FORMATS),
    Param("data.root", "text", None, "data set", "The RecordIO or image folder (relative paths are read from the "
          "working directory); also where verification sets given by name are looked up.", min=1, optional=True),
    Param("data.num_classes", "int", None, "classes (synthetic; 0 = from the data)", "Identity count: required "
          "for synthetic data, read from `property` for RecordIO (null = from the data).", min=2, optional=True),
    Param("data.num_images", "int", None, "images (0 = from the data)", "Size of the synthetic set; for "
          "RecordIO and folders, the images per epoch of the lr schedule (arcface_torch's num_image; null = the "
          "data's count).", min=1, optional=True),
    Param("num_workers", "int", 2, "data loader workers", min=0),
    Param("pin_memory", "bool", True, "pin memory", "Page-locked batches for faster copies to the GPU."),
    Param("flip", "bool", True, "random horizontal flip", "Mirror training images at random (insightface: on)."),
    Param("val_targets", "list", (), "verification sets", "LFW-protocol accuracy with flip test on these .bin "
          "sets: paths, or names such as lfw looked up as <data.root>/lfw.bin."),
    Param("val_every", "int", 2000, "verify every (steps)", min=1),
    Param("checkpoint_every", "int", 2000, "checkpoint every (steps)", "Resume loses at most this many steps.",
          min=1),
    Param("log_every", "int", 50, "log every (steps)", min=1),
    Param("seed", "int", 2048, "seed", min=0),
    Param("grad_clip", "float", 5.0, "gradient clipping (0 = off)", "Largest norm of the backbone's gradient.",
          min=0.0, step=0.5),
    Param("channels_last", "bool", True, "channels_last (CUDA)", "NHWC memory layout on GPUs (faster convolutions)."),
    Param("output", "text", "runs/run", "run directory", "Where the trainer writes the run (the launcher chooses "
          "it for runs it starts).", min=1),
    Param("embeddings_sample", "int", 2000, "held-out embeddings", "Images kept out of training for "
          "embeddings.npz (0 = none).", min=0),
    Param("description", "text", "", "description", "What the run is for (free text)."),
))

#: the nested groups of the file (``data``, ``loss_params``), in RUN_SPEC's order
GROUPS = tuple(dict.fromkeys(n.partition(".")[0] for n in RUN_SPEC.names if "." in n))


# ------------------------------------------------------------------------------- the config as a dataclass

_TYPES = {"float": float, "int": int, "bool": bool, "choice": str, "text": str, "list": list, "multi": tuple}


def _field(p: Param) -> dataclasses.Field:
    if isinstance(p.default, list | tuple):
        return dataclasses.field(default_factory=lambda d=p.default: list(d))
    return dataclasses.field(default=p.default)


def _fields(group: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """The dataclass fields of one group of RUN_SPEC ("" = the top level, where each group is one field)."""
    out: list[tuple[str, Any, dataclasses.Field]] = []
    for p in RUN_SPEC:
        head, dot, rest = p.name.rpartition(".")
        if head == group:
            kind = _TYPES[p.kind]
            out.append((rest, kind | None if p.optional else kind, _field(p)))
        elif not group and head and head not in (f[0] for f in out):
            cls = _GROUP_CLASSES[head]
            out.append((head, cls, dataclasses.field(default_factory=cls)))
    return out


class _RunConfig:
    """Methods of :class:`TrainConfig` (its fields come from RUN_SPEC)."""

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON object of ``config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a JSON object without checking values (:func:`config_errors` does); an unknown key or a
        group that is not an object raises :class:`ConfigError` (a typo would otherwise be ignored)."""
        nested = nest(flatten(d))
        groups = {g: _GROUP_CLASSES[g](**nested.pop(g, {})) for g in GROUPS}
        return cls(**nested, **groups)


_GROUP_DOCS = {
    "data": "``format``: rec (insightface train.rec/idx/property in ``root``), folder (one sub-folder per "
            "identity) or synthetic (random tensors, ``num_classes`` × ``num_images``, for speed tests).",
    "loss_params": "The loss's other parameters (None = the loss's default): easy margin, triplet margin, "
                   "A-Softmax m and λ.",
}
_GROUP_CLASSES: dict[str, type] = {}
for _g in GROUPS:
    _GROUP_CLASSES[_g] = dataclasses.make_dataclass(
        "".join(w.title() for w in _g.split("_")) + ("Config" if _g == "data" else ""), _fields(_g),
        namespace={"__module__": __name__, "__doc__": _GROUP_DOCS.get(_g, "")})
DataConfig = _GROUP_CLASSES["data"]
LossParams = _GROUP_CLASSES["loss_params"]
TrainConfig = dataclasses.make_dataclass("TrainConfig", _fields(), bases=(_RunConfig,), namespace={
    "__module__": __name__,
    "__doc__": "One training run: a field per key of RUN_SPEC (``data`` and ``loss_params`` are groups). "
               "``batch_size`` is per process; ``max_steps`` caps the run (the lr schedule then decays over the "
               "capped length)."})


def flatten(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"data": {"root": x}}`` -> ``{"data.root": x}``; unknown keys raise :class:`ConfigError` naming them."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"a config is a JSON object, got {type(cfg).__name__}")
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in cfg.items():
        if key in GROUPS:
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            members = [n.partition(".")[2] for n in RUN_SPEC.names if n.startswith(key + ".")]
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be an object {{{', '.join(members)}}}, got {value!r}")
            bad = sorted(set(value) - set(members))
            if bad:
                raise ConfigError(f"unknown {key} key(s) {', '.join(bad)}; known: {', '.join(members)}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key in RUN_SPEC:
            flat[key] = value
        else:
            unknown.append(str(key))
    if unknown:
        known = sorted({n.partition(".")[0] for n in RUN_SPEC.names})
        raise ConfigError(f"unknown config key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(known)}")
    return flat


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"data.root": x}`` -> ``{"data": {"root": x}}`` (the inverse of :func:`flatten`)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        head, dot, rest = name.partition(".")
        if dot:
            out.setdefault(head, {})[rest] = value
        else:
            out[name] = value
    return out


def set_key(cfg: dict[str, Any], key: str, value: Any) -> None:
    """``--set KEY=VALUE``: a top-level key, a whole group (``data={...}``) or one nested key (``data.root=x``)."""
    head, dot, rest = key.partition(".")
    if not dot:
        cfg[key] = value
        return
    group = cfg.get(head)
    cfg[head] = {**(group if isinstance(group, Mapping) else {}), rest: value}


def loss_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`arcface_viz.losses.make_loss` for ``cfg`` (null keys: the loss's default)."""
    flat = flatten(cfg)
    return {name: flat[key] for name, key in LOSS_KEYS.items() if flat.get(key) is not None}


# ------------------------------------------------------------------------------- checks between keys


@dataclass(frozen=True)
class Rule:
    """A condition between keys: ``check(values)`` returns a message, or None when it holds.

    It runs only when every one of ``keys`` passed its own check, so each problem is reported once.
    """

    keys: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], str | None]


def names_a_file(target: str) -> bool:
    """A verification target given as a path (else a name such as ``lfw``, looked up as <data.root>/lfw.bin)."""
    return target.endswith(".bin") or "/" in target or os.sep in target


def resolve_val_target(target: str, root: str | None) -> Path:
    """A .bin path as given, or a name such as ``lfw`` resolved to ``<data root>/lfw.bin``."""
    if names_a_file(target):
        return Path(target).expanduser()
    return Path(root or ".").expanduser() / f"{target}.bin"


def _loss_builds(v: Mapping[str, Any]) -> str | None:
    try:
        make_loss(v["loss"], 2, 2, **{n: v[k] for n, k in LOSS_KEYS.items() if v[k] is not None})
    except (ValueError, TypeError) as exc:
        return f"loss parameters: {exc}"
    return None


def _data_needs(v: Mapping[str, Any]) -> str | None:
    fmt = v["data.format"]
    if fmt != "synthetic":
        return None if v["data.root"] else f"data.root (the {fmt} data folder) is required"
    if v["data.num_classes"] is None:
        return "data.num_classes is required for synthetic data"
    return None if v["data.num_images"] else "data.num_images (synthetic) must be an integer >= 1, got None"


RULES = (
    Rule(("loss", *LOSS_KEYS.values()), _loss_builds),
    Rule(("sample_rate", "loss"), lambda v: None if v["sample_rate"] == 1 or supports(v["loss"]) else (
        f"sample_rate < 1 needs Partial FC, which supports the cosine-head losses only; {v['loss']!r} trains "
        "with a replicated head (set sample_rate to 1)")),
    Rule(("warmup_epoch", "num_epoch"), lambda v: None if v["warmup_epoch"] < v["num_epoch"] else (
        f"warmup_epoch must be in [0, num_epoch), got {v['warmup_epoch']!r}")),
    Rule(("data.format", "data.root", "data.num_classes", "data.num_images"), _data_needs),
    Rule(("val_targets", "data.root"), lambda v: None if v["data.root"] or all(map(names_a_file, v["val_targets"]))
         else "val_targets given by name (e.g. 'lfw') need data.root to find <root>/<name>.bin"),
)


def spec_errors(spec: Spec, values: Mapping[str, Any], rules: tuple[Rule, ...]) -> tuple[dict[str, Any], list[str]]:
    """Each key's own check (:meth:`~arcface_viz.params.Spec.check`), then every rule whose keys all passed: the
    checked values and every problem, one message each."""
    good, problems = spec.check(values)
    errors = list(problems.values())
    for rule in rules:
        if not any(k in problems for k in rule.keys):
            message = rule.check(good)
            if message:
                errors.append(message)
    return good, errors


def config_errors(cfg: TrainConfig, check_paths: bool = True) -> list[str]:
    """Every problem of ``cfg``, one message each (empty when it can run); the data paths only with
    ``check_paths`` and only once everything else is right."""
    _, errors = spec_errors(RUN_SPEC, flatten(cfg), RULES)
    if check_paths and not errors:
        errors += _path_errors(cfg)
    return errors


def _path_errors(cfg: TrainConfig) -> list[str]:
    from .recordio import DataFormatError, read_property

    e: list[str] = []
    d = cfg.data
    if d.format == "rec":
        root = Path(d.root).expanduser()
        missing = [n for n in ("train.rec", "train.idx", "property") if not (root / n).is_file()]
        if missing:
            e.append(f"data.root {root} lacks {', '.join(missing)} (an insightface RecordIO set)")
        else:
            try:
                n = read_property(root / "property")[0]
                if d.num_classes is not None and d.num_classes != n:
                    e.append(f"data.num_classes is {d.num_classes} but {root / 'property'} says {n}")
            except (DataFormatError, OSError) as exc:
                e.append(str(exc))
    elif d.format == "folder" and not Path(d.root).expanduser().is_dir():
        e.append(f"data.root {d.root} is not a folder (one sub-folder of images per identity expected)")
    for t in cfg.val_targets:
        p = resolve_val_target(t, d.root)
        if not p.is_file():
            e.append(f"verification set {t!r} not found (looked for {p})")
    out = Path(cfg.output).expanduser()
    if out.exists() and not out.is_dir():
        e.append(f"output {out} is a file, not a run directory")
    return e


def require_valid(cfg: TrainConfig, check_paths: bool = True, where: str = "config") -> None:
    """Raise :class:`ConfigError` listing every problem of ``cfg`` (:func:`config_errors`)."""
    errors = config_errors(cfg, check_paths=check_paths)
    if errors:
        raise ConfigError(f"{where}: " + "; ".join(errors))


# ------------------------------------------------------------------------------- files and presets


def list_presets() -> list[str]:
    """Names of the configs shipped in ``arcface_viz/configs`` (``load_config(name)`` reads one)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def read_config_json(path_or_preset: str | os.PathLike) -> dict[str, Any]:
    """The JSON object of a config file, or of a preset by name; :class:`ConfigError` if there is none."""
    text = os.fspath(path_or_preset)
    path = Path(text).expanduser()
    if not path.is_file():
        if text not in list_presets():
            raise ConfigError(f"config {text!r} is neither a file nor a preset ({', '.join(list_presets())})")
        path = CONFIG_DIR / f"{text}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a JSON object, got {type(raw).__name__}")
    return raw


def load_config(path_or_preset: str | os.PathLike, check_paths: bool = False) -> TrainConfig:
    """Read a JSON config file, or a preset by name; raise :class:`ConfigError` if it is not valid.

    Data files are checked only with ``check_paths`` (a preset names data this machine may not have).
    """
    raw = read_config_json(path_or_preset)
    where = str(path_or_preset)
    try:
        cfg = TrainConfig.from_dict(raw)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    require_valid(cfg, check_paths=check_paths, where=where)
    return cfg


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(cfg.to_dict(), indent=2) + "\n")


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the loss's defaults for the top-level loss keys (s, m1, m2, m3, interclass_filtering_threshold) and
    make data, verification and output paths absolute."""
    ref = make_loss(cfg.loss, 2, 2, **loss_kwargs(cfg))
    data = replace(cfg.data)
    if data.root:
        data.root = str(Path(data.root).expanduser().resolve())
    if data.format == "rec" and data.num_classes is None:
        from .recordio import read_property

        data.num_classes = read_property(Path(data.root) / "property")[0]
    return replace(
        cfg, **{k: getattr(ref, k) for k in TOP_LEVEL_LOSS_KEYS}, data=data,
        val_targets=[str(resolve_val_target(t, data.root).resolve()) for t in cfg.val_targets],
        output=str(Path(cfg.output).expanduser().resolve()))


def spec_table() -> list[dict[str, str]]:
    """RUN_SPEC as rows (key, default, allowed values, help): what ``arcface-viz runs keys`` prints."""
    return [{"key": p.name, "default": json.dumps(list(p.default) if isinstance(p.default, tuple) else p.default),
             "allowed": p.requirement(), "help": p.help or p.title} for p in RUN_SPEC]

