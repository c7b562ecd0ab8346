"""Read an insightface arcface_torch config (``configs/*.py``) into a run config of ours, without running it.

arcface_torch's configs are Python files that build an EasyDict::

    from easydict import EasyDict as edict
    config = edict()
    config.margin_list = (1.0, 0.5, 0.0)
    config.network = "r50"
    config.warmup_epoch = config.num_epoch // 10
    ...

and its ``train_v2.py`` reads ``configs/base.py`` first, then the job's file over it.  :func:`parse_config` reads
such a file with :mod:`ast` and never executes it: it takes the easydict import, ``config = edict()`` and
assignments ``config.KEY = EXPR``, where EXPR is a literal (number, string, bool, None, tuple, list, dict),
arithmetic on numbers, or an earlier key (``config.num_epoch // 10``).  Anything else is an error naming its
line.  The base is ``base.py`` beside the file when there is one, else :data:`ARCFACE_TORCH_BASE` (its
``configs/base.py``, transcribed).

:func:`convert` maps the merged keys to :data:`~.config.RUN_SPEC` (table below) and what train_v2.py fixes in
code: s = 64, SGD momentum 0.9, gradient clipping at 5 on the backbone, dropout 0, random flips, the margin
without gradient for ArcFace (its ``CombinedMarginLoss`` since Dec 2022) and the lr schedule of
``PolynomialLRWarmup`` (power 1, since April 2023: ``lr_schedule = "polynomial_lr_warmup"``).  A key we do not
support, or a value that would train differently here, is an error naming the key; keys that change nothing
about the training (logging, DALI loading, W&B switched off) are dropped and listed in the notes.

======================================  ===============================================================
arcface_torch                           ours
======================================  ===============================================================
margin_list (1, m2, 0)                  loss arcface, m2, loss_params.detach_margin = true
margin_list (1, 0, m3), m3 > 0          loss cosface, m3
network r18/r34/r50/r100/mbf            network iresnet18 … mobilefacenet
rec (a folder, or "synthetic")          data.format rec + data.root, or synthetic
num_classes, num_image                  data.num_classes, data.num_images (the lr schedule's epoch)
fp16                                    amp fp16 / none
interclass_filtering_threshold          interclass_filtering_threshold
verbose, frequent                       val_every, log_every
output (None: work_dirs/<file name>)   output
embedding_size, sample_rate, batch_size, optimizer, lr, weight_decay, num_epoch, warmup_epoch, val_targets,
seed, num_workers: the same names
======================================  ===============================================================

One difference stays: past θ_y = π − m2 arcface_torch's ArcFace logit cos(θ_y + m2) turns back up, ours follows
the monotonic cos θ_y − m2·sin m2 (same gradient with the detached margin; such samples are ~151° from their
centre for m2 = 0.5).
"""

from __future__ import annotations

import ast
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .backbones import ALIASES
from .config import RUN_SPEC, ConfigError, TrainConfig, config_errors, nest

#: arcface_torch's configs/base.py (the keys every job config starts from), transcribed
ARCFACE_TORCH_BASE: dict[str, Any] = {
    "margin_list": (1.0, 0.5, 0.0), "network": "r50", "resume": False, "save_all_states": False,
    "output": "ms1mv3_arcface_r50", "embedding_size": 512, "sample_rate": 1, "interclass_filtering_threshold": 0,
    "fp16": False, "batch_size": 128, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
    "verbose": 2000, "frequent": 10, "dali": False, "dali_aug": False, "gradient_acc": 1, "seed": 2048,
    "num_workers": 2, "wandb_key": "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "suffix_run_name": None,
    "using_wandb": False, "wandb_entity": "entity", "wandb_project": "project", "wandb_log_all": True,
    "save_artifacts": False, "wandb_resume": False,
}
MAX_CONFIG_CHARS = 200_000  # arcface_torch's configs are about 1,000 characters
SCALE = 64.0  # train_v2.py: CombinedMarginLoss(64, *margin_list, interclass_filtering_threshold)
MOMENTUM = 0.9  # train_v2.py: SGD(..., momentum=0.9, ...), whatever config.momentum says
GRAD_CLIP = 5.0  # train_v2.py: clip_grad_norm_(backbone.parameters(), 5)

#: keys read into ours one to one (arcface_torch name -> run-config key)
SAME = {"embedding_size": "embedding_size", "sample_rate": "sample_rate", "batch_size": "batch_size",
        "optimizer": "optimizer", "lr": "lr", "weight_decay": "weight_decay", "num_epoch": "num_epoch",
        "warmup_epoch": "warmup_epoch", "val_targets": "val_targets", "seed": "seed", "num_workers": "num_workers",
        "verbose": "val_every", "frequent": "log_every", "num_classes": "data.num_classes",
        "num_image": "data.num_images", "interclass_filtering_threshold": "interclass_filtering_threshold"}
#: keys that change nothing about the training here, when they have these values (None: any value)
DROPPED: dict[str, Any] = {
    "save_all_states": None, "dali": None, "wandb_key": None, "suffix_run_name": None, "wandb_entity": None,
    "wandb_project": None, "wandb_log_all": None, "save_artifacts": None, "wandb_resume": None, "notes": None,
    "using_wandb": False, "dali_aug": False, "resume": False, "gradient_acc": 1,
}
_WHY_NOT = {
    "using_wandb": "Weights & Biases logging is not built in (metrics.jsonl and tensorboard/ hold the curves)",
    "dali_aug": "DALI's extra augmentations are not reproduced",
    "resume": "resume with `arcface-viz runs resume ID` or `--resume` instead",
    "gradient_acc": "gradient accumulation is not supported (raise batch_size or the process count)",
}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class ConvertError(ConfigError):
    """An arcface_torch config this converter cannot read or map; the message names every key and line."""


# ------------------------------------------------------------------------------------------------ parsing


def _is_config(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Name) and node.id in names


def _evaluate(node: ast.AST, values: Mapping[str, Any], names: set[str]) -> Any:
    """The value of a literal expression: constants, tuples/lists/dicts of them, arithmetic on numbers, earlier
    ``config.KEY``; ValueError otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        items = [_evaluate(e, values, names) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_evaluate(k, values, names): _evaluate(v, values, names) for k, v in zip(node.keys, node.values,
                                                                                        strict=True)}
    if isinstance(node, ast.Attribute) and _is_config(node.value, names):
        if node.attr not in values:
            raise ValueError(f"config.{node.attr} is read before it is set")
        return values[node.attr]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_number(_evaluate(node.operand, values, names)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        a, b = (_number(_evaluate(x, values, names)) for x in (node.left, node.right))
        if isinstance(node.op, ast.Pow) and abs(b) > 64:
            raise ValueError("an exponent above 64")
        try:
            return _BINARY[type(node.op)](a, b)
        except ArithmeticError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"{ast.unparse(node)!r} is not a literal, arithmetic or an earlier config key")


def _number(v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"arithmetic on {v!r}, which is not a number")
    return v


def parse_config(text: str, where: str = "config", base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.KEY`` values an arcface_torch config file sets, read with :mod:`ast` (never executed), over
    ``base`` (earlier keys may be read: ``config.num_epoch // 10``).  :class:`ConvertError` lists every
    statement it cannot read, with its line."""
    if len(text) > MAX_CONFIG_CHARS:
        raise ConvertError(f"{where}: {len(text):,} characters is not an arcface_torch config (at most "
                           f"{MAX_CONFIG_CHARS:,})")
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as exc:
        raise ConvertError(f"{where}: not a Python file (line {exc.lineno}: {exc.msg})") from None
    values: dict[str, Any] = dict(base or {})
    names: set[str] = set()  # what `config` is called (``config = edict()``)
    ctor = {"edict", "EasyDict"}
    errors: list[str] = []
    for st in tree.body:
        line = f"{where} line {st.lineno}"
        if isinstance(st, ast.ImportFrom) and st.module == "easydict":
            ctor |= {a.asname or a.name for a in st.names}
            continue
        if isinstance(st, ast.Import) and all(a.name == "easydict" for a in st.names):
            continue
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):  # a docstring
            continue
        if isinstance(st, ast.Assign) and len(st.targets) == 1:
            target, value = st.targets[0], st.value
            if (isinstance(target, ast.Name) and isinstance(value, ast.Call) and not value.args
                    and not value.keywords and isinstance(value.func, ast.Name) and value.func.id in ctor):
                names.add(target.id)  # config = edict()
                continue
            if isinstance(target, ast.Attribute) and _is_config(target.value, names):
                try:
                    values[target.attr] = _evaluate(value, values, names)
                except ValueError as exc:
                    errors.append(f"{line}: config.{target.attr}: {exc}")
                continue
        errors.append(f"{line}: only `config = edict()` and `config.KEY = literal` are read, not "
                      f"{ast.unparse(st).splitlines()[0][:60]!r}")
    if not names and not errors:
        errors.append(f"{where}: no `config = edict()` (is this an arcface_torch config?)")
    if errors:
        raise ConvertError("; ".join(errors))
    return values


def read_arcface_torch_config(path: str | os.PathLike) -> dict[str, Any]:
    """The merged keys of an arcface_torch config file, as its train_v2.py sees them: ``base.py`` beside the file
    (else :data:`ARCFACE_TORCH_BASE`), then the file over it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(f"{path}: cannot read it ({exc})") from None
    base = dict(ARCFACE_TORCH_BASE)
    base_file = path.parent / "base.py"
    if base_file.is_file() and base_file.resolve() != path.resolve():
        try:
            base = parse_config(base_file.read_text(encoding="utf-8"), str(base_file))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConvertError(f"{base_file}: cannot read it ({exc})") from None
    return parse_config(text, str(path), base)


# ------------------------------------------------------------------------------------------------ mapping


def _margin(margin_list: Any) -> tuple[dict[str, Any], str | None]:
    """(our loss keys, or an error) for arcface_torch's ``margin_list`` as its CombinedMarginLoss applies it."""
    if (not isinstance(margin_list, tuple | list) or len(margin_list) != 3
            or not all(isinstance(m, int | float) and not isinstance(m, bool) for m in margin_list)):
        return {}, f"margin_list must be three numbers (m1, m2, m3), got {margin_list!r}"
    m1, m2, m3 = (float(m) for m in margin_list)
    if m1 == 1.0 and m3 == 0.0:
        return {"loss": "arcface", "m2": m2, "loss_params.detach_margin": True}, None
    if m3 > 0 and m1 == 1.0 and m2 == 0.0:
        return {"loss": "cosface", "m3": m3}, None
    if m3 > 0:
        return {}, (f"margin_list {tuple(margin_list)}: with m3 > 0 arcface_torch applies only the CosFace margin "
                    f"m3 and ignores m1 and m2; write (1.0, 0.0, {m3:g}) to train as it does")
    return {}, (f"margin_list {tuple(margin_list)}: arcface_torch's CombinedMarginLoss supports only (1, m2, 0) "
                "and (1, 0, m3 > 0) (it raises for this one)")


def convert(values: Mapping[str, Any], name: str = "config") -> tuple[dict[str, Any], list[str]]:
    """(our run config as its JSON object, notes) from the merged keys of an arcface_torch config.

    ``name`` is the file's stem (the default output folder is ``work_dirs/<name>``, as arcface_torch's).
    Raises :class:`ConvertError` naming every key we do not support, then every problem of the result."""
    errors: list[str] = []
    notes: list[str] = []
    flat: dict[str, Any] = {"s": SCALE, "momentum": MOMENTUM, "grad_clip": GRAD_CLIP, "dropout": 0.0, "flip": True,
                            "lr_schedule": "polynomial_lr_warmup", "loss_params.detach_margin": None}
    for key, value in values.items():
        if key in SAME:
            ours = SAME[key]
            if isinstance(value, tuple):
                value = list(value)
            elif RUN_SPEC[ours].kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            flat[ours] = value
        elif key == "margin_list":
            loss, problem = _margin(value)
            flat.update(loss)
            errors += [problem] if problem else []
        elif key == "network":
            if value in ALIASES:
                flat["network"] = ALIASES[value]
            else:
                errors.append(f"network {value!r}: not available here (we have {', '.join(ALIASES)})")
        elif key == "rec":
            synthetic = value == "synthetic"
            flat.update({"data.format": "synthetic" if synthetic else "rec", "data.root": None if synthetic else value})
        elif key == "fp16":
            flat["amp"] = "fp16" if value else "none"
        elif key == "momentum":
            if value != MOMENTUM:
                errors.append(f"momentum {value!r}: arcface_torch's train_v2.py ignores it and uses {MOMENTUM}; "
                              f"remove it or set {MOMENTUM}")
        elif key == "output":
            flat["output"] = value if value else f"work_dirs/{name}"
        elif key in DROPPED:
            keep = DROPPED[key]
            if keep is not None and value != keep:
                errors.append(f"{key} = {value!r}: {_WHY_NOT[key]}")
            elif key == "dali" and value:
                notes.append("dali: the RecordIO is read by our loader (the same images and flips, without DALI)")
        else:
            errors.append(f"{key}: not an arcface_torch key we support")
    if errors:
        raise ConvertError(f"{name}: " + "; ".join(errors))
    flat.setdefault("output", f"work_dirs/{name}")
    cfg = TrainConfig().to_dict()
    for group, members in nest(flat).items():
        if isinstance(members, dict):
            cfg[group] = {**cfg[group], **members}
        else:
            cfg[group] = members
    cfg["description"] = f"Converted from arcface_torch's {name}.py" + (f" ({'; '.join(notes)})" if notes else "")
    try:
        problems = config_errors(TrainConfig.from_dict(cfg), check_paths=False)
    except (TypeError, ConfigError) as exc:
        problems = [str(exc)]
    if problems:
        raise ConvertError(f"{name}: after conversion: " + "; ".join(problems))
    return cfg, notes


def convert_file(path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """(our run config, notes) for an arcface_torch config file: :func:`read_arcface_torch_config` + :func:`convert`."""
    return convert(read_arcface_torch_config(path), Path(path).stem)


def convert_text(text: str, name: str = "config", base: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, Any], list[str]]:
    """The same for a config's text (an upload): over ``base`` (default :data:`ARCFACE_TORCH_BASE`)."""
    values = parse_config(text, f"{name}.py", ARCFACE_TORCH_BASE if base is None else base)
    return convert(values, name)
