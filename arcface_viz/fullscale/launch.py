"""What a launch needs before anything starts: the config (checked, paths confined) and torchrun's values.

- :data:`LAUNCH_SPEC`: torchrun's launch values (processes per node, nodes, node rank, master address and port),
  checked by :func:`check_launch`;
- :func:`validate_config`: a run config with its data paths confined to the data roots, then every check of
  :func:`~arcface_viz.fullscale.config.config_errors`;
- the launch form of the Training runs page: :func:`launch_spec` shows every key of
  :data:`~arcface_viz.fullscale.config.RUN_SPEC` but the free texts, as the JSON file has them, with four
  conventions of the form (:func:`form_param`); :func:`values_from_config` and :func:`config_from_values`
  cross between the form and the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import settings
from ..losses import LOSSES, loss_defaults
from ..params import LOSS_SPEC, Param, Spec
from .backbones import BACKBONES
from .config import (
    LOSS_KEYS,
    RUN_SPEC,
    ConfigError,
    Rule,
    TrainConfig,
    config_errors,
    flatten,
    list_presets,
    names_a_file,
    read_config_json,
    resolve_val_target,
    set_key,
    spec_errors,
)

MAX_PROCS_PER_NODE = 1024
MAX_NODES = 4096
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$")

LAUNCH_SPEC = Spec((
    Param("nproc_per_node", "int", 1, "processes per node", "GPUs to use on each machine (torchrun "
          "--nproc_per_node); on CPU, processes.", min=1, max=MAX_PROCS_PER_NODE, widget="number"),
    Param("nnodes", "int", 1, "nodes", "Machines (torchrun --nnodes); start the others with the command lines "
          "shown on the Runs tab.", min=1, max=MAX_NODES, widget="number"),
    Param("node_rank", "int", 0, "this node's rank", "0 for the machine that hosts the rendezvous.", min=0,
          max=MAX_NODES - 1, widget="number"),
    Param("master_addr", "text", "127.0.0.1", "master address (node 0)", "Host name or IP of node 0; the other "
          "nodes connect to it.", min=1),
    Param("master_port", "int", None, "master port (0 = a free one)", "torchrun --master_port; 29500 when "
          "several nodes are used and it is 0.", min=1, max=65535, optional=True, widget="number"),
))

LAUNCH_RULES = (
    Rule(("node_rank", "nnodes"), lambda v: None if v["node_rank"] < v["nnodes"] else (
        f"node_rank must be from 0 to nnodes - 1 = {v['nnodes'] - 1}, got {v['node_rank']!r}")),
    Rule(("master_addr",), lambda v: None if _HOST_RE.match(v["master_addr"]) else (
        f"master_addr must be a host name or IP address, got {v['master_addr']!r}")),
)


def check_launch(**values: Any) -> dict[str, Any]:
    """torchrun's values (names of LAUNCH_SPEC), checked; ValueError listing every problem."""
    good, errors = spec_errors(LAUNCH_SPEC, values, LAUNCH_RULES)
    if errors:
        raise ValueError("; ".join(errors))
    return good


# ---------------------------------------------------------------------------------------------- the config


def load_launch_config(config_or_preset: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A config as a plain dict from a preset name (``list_presets()``), a JSON file or a dict.

    Only the JSON is read here; :func:`validate_config` checks it (``launch`` does so before anything starts).
    """
    if isinstance(config_or_preset, Mapping):
        return dict(config_or_preset)
    return read_config_json(config_or_preset)


def validate_config(config: Mapping[str, Any], output: str | os.PathLike) -> dict[str, Any]:
    """Check a config before anything starts; return it with confined absolute paths and ``output`` set.

    ``data.root`` and every verification set must lie inside :func:`settings.data_roots` (after ``..`` and
    symlinks are resolved); the output is the run directory the registry chose.  Then the trainer's own
    checks run (:func:`~.config.config_errors` with the data paths checked), so a typo, a value out of range
    or missing data is reported here, not in a log after the launch.  Raises ValueError.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"a config is a JSON object, got {type(config).__name__}")
    try:
        cfg = json.loads(json.dumps(dict(config)))  # a deep copy, and only what JSON can hold
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the config cannot be written as JSON: {exc}") from None
    roots = settings.data_roots()
    data = cfg.get("data")
    root = None
    if isinstance(data, dict) and isinstance(data.get("root"), str) and data["root"].strip():
        data["root"] = root = str(settings.confine(data["root"], roots, what="data.root"))
    targets = cfg.get("val_targets")
    if isinstance(targets, list):
        checked = []
        for t in targets:
            if isinstance(t, str) and t and (root is not None or names_a_file(t)):
                t = str(settings.confine(resolve_val_target(t, root), roots, what=f"verification set {t!r}"))
            checked.append(t)
        cfg["val_targets"] = checked
    cfg["output"] = str(output)
    try:
        tc = TrainConfig.from_dict(cfg)
    except (TypeError, ConfigError) as exc:
        raise ValueError(f"config: {exc}") from None
    errors = config_errors(tc, check_paths=True)
    if errors:
        raise ValueError("config: " + "; ".join(errors))
    return cfg


# ---------------------------------------------------------------------------------------------- the form

_LOSS_NAMES = {key: name for name, key in LOSS_KEYS.items()}  # run-config key -> LOSS_SPEC name
_FORM_NULL = {"int": 0, "text": ""}  # what an optional key shows for null on the form, by its kind in RUN_SPEC


def form_param(p: Param, datasets: Mapping[str, list[Path]]) -> Param | None:
    """How a RUN_SPEC or LAUNCH_SPEC key appears on the launch form (None: not on it).

    The form's conventions: free texts (description, output, master address) are not sliders and stay off it;
    ``data.root`` and ``val_targets`` choose among the data sets found in the data roots (so the page only
    offers confined paths); a loss parameter is the lessons' slider (LOSS_SPEC's range) and shows the loss's
    value instead of null; an optional integer shows 0 for null, the data set "" (none).
    """
    if p.name == "data.root":
        rec, folders = datasets.get("rec", []), datasets.get("folder", [])
        roots = ("", *(str(x) for x in rec), *(str(x) for x in folders))
        labels = {"": "(none: synthetic data)", **{str(x): f"RecordIO: {x}" for x in rec},
                  **{str(x): f"image folder: {x}" for x in folders}}
        return replace(p, kind="choice", choices=roots, labels=labels, default="", optional=False, min=None)
    if p.name == "val_targets":
        return replace(p, kind="multi", choices=tuple(str(x) for x in datasets.get("bin", [])), default=())
    if p.kind == "text":
        return None
    if p.name == "network":
        return replace(p, choices=BACKBONES)
    if p.name in _LOSS_NAMES:
        return replace(LOSS_SPEC[_LOSS_NAMES[p.name]], name=p.name)
    if p.optional and p.kind == "int":
        return replace(p, optional=False, min=0, default=_FORM_NULL["int"])
    return p


def launch_spec(presets: list[str] | None = None, datasets: dict[str, list[Path]] | None = None,
                default_preset: str = "tiny_cpu") -> Spec:
    """The launch form as a :class:`~arcface_viz.params.Spec`: a preset to start from, every key of RUN_SPEC
    (:func:`form_param`) and torchrun's values, with the preset's values as defaults.

    ``datasets`` (from :func:`~.prepare.find_datasets`) turns data roots and ``.bin`` files into choices.
    """
    presets = list(list_presets() if presets is None else presets) or ["custom"]
    preset = default_preset if default_preset in presets else presets[0]
    found = datasets or {"rec": [], "folder": [], "bin": []}
    form = [q for q in (form_param(p, found) for p in (*RUN_SPEC, *LAUNCH_SPEC)) if q is not None]
    spec = Spec((Param("preset", "choice", preset, "Preset", "Start from a shipped config (arcface_viz/configs); "
                       "picking one loads its values.", choices=tuple(presets)), *form))
    defaults = values_from_config(load_launch_config(preset) if preset != "custom" else {})
    return spec.with_defaults(**{k: v for k, v in defaults.items() if _offered(spec[k], v)})


def _offered(p: Param, value: Any) -> bool:
    if p.kind == "choice":
        return value in p.choices
    if p.kind == "multi":
        return all(v in p.choices for v in value)
    return True


def loss_values(loss: str) -> dict[str, Any]:
    """The loss's paper values under their run-config keys (what the form loads when the loss changes)."""
    return {LOSS_KEYS[name]: v for name, v in loss_defaults(loss).items() if name in LOSS_KEYS}


def values_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The launch form's values for a config (every RUN_SPEC key but the free texts; see :func:`form_param`)."""
    flat = {**RUN_SPEC.defaults(), **flatten(cfg)}
    paper = loss_values(flat["loss"] if flat["loss"] in LOSSES else LOSS_SPEC["loss"].default)
    out: dict[str, Any] = {}
    for p in RUN_SPEC:
        value = flat[p.name]
        if p.kind == "text" and p.name != "data.root":
            continue
        if value is None and p.name in _LOSS_NAMES:
            value = paper.get(p.name, LOSS_SPEC[_LOSS_NAMES[p.name]].default)
        elif value is None and p.kind in _FORM_NULL:
            value = _FORM_NULL[p.kind]
        out[p.name] = tuple(value) if p.kind == "list" else value
    return out


def config_from_values(values: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A run config from the launch form: ``base`` (the preset's config by default) with the form's values.

    Loss parameters the chosen loss does not use are null (s, m1, m2, m3 then take the loss's defaults); an
    optional integer's 0 and an empty data set are null.
    """
    if base is None:
        preset = values.get("preset")
        base = load_launch_config(preset) if preset and preset != "custom" else {}
    cfg = json.loads(json.dumps(dict(base)))
    loss = values.get("loss", cfg.get("loss", "arcface"))
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r} is unknown; choose one of {', '.join(LOSSES)}")
    used = {LOSS_KEYS[name] for name in LOSSES[loss].params}
    for p in RUN_SPEC:
        if p.name in _LOSS_NAMES and p.name not in used:
            set_key(cfg, p.name, None)
        elif p.name in values:
            value = values[p.name]
            if p.optional and p.kind in _FORM_NULL and value == _FORM_NULL[p.kind]:
                value = None
            set_key(cfg, p.name, list(value) if p.kind == "list" else value)
    return cfg
