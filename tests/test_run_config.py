"""The full-scale run config: one Spec (RUN_SPEC) gives the dataclass, the checks, the launch form and --set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from arcface_viz.cli import main as cli_main
from arcface_viz.fullscale import config as C
from arcface_viz.fullscale import launch as L
from arcface_viz.params import Param, ParamError

# config.json as the trainer of the previous version wrote it (resolved tiny_cpu): it must load and resume
EARLIER_CONFIG = {
    "network": "mobilefacenet", "embedding_size": 512, "dropout": 0.0, "loss": "arcface", "s": 32.0, "m1": 1.0,
    "m2": 0.3, "m3": 0.0, "loss_params": {}, "sample_rate": 1.0, "amp": "none", "batch_size": 8, "optimizer": "sgd",
    "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "num_epoch": 1, "warmup_epoch": 0, "max_steps": 6,
    "data": {"format": "synthetic", "root": None, "num_classes": 20, "num_images": 80}, "num_workers": 0,
    "pin_memory": False, "flip": False, "val_targets": [], "val_every": 1000, "checkpoint_every": 3, "log_every": 1,
    "seed": 2048, "grad_clip": 5.0, "channels_last": False, "output": "/tmp/runs/00001-tiny",
    "embeddings_sample": 16, "description": "A few steps on CPU in seconds",
}


def flat_fields(cls) -> set[str]:
    out = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type):
            out |= {f"{f.name}.{g.name}" for g in dataclasses.fields(f.type)}
        else:
            out.add(f.name)
    return out


def test_every_key_of_the_spec_is_a_field_a_cli_key_and_on_the_launch_form(capsys):
    assert flat_fields(C.TrainConfig) == set(C.RUN_SPEC.names)
    assert cli_main(["runs", "keys", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in rows] == list(C.RUN_SPEC.names)
    assert next(r for r in rows if r["key"] == "lr")["allowed"] == "> 0"
    form = L.launch_spec()
    free_texts = {p.name for p in C.RUN_SPEC if p.kind == "text"} - {"data.root"}
    assert free_texts == {"output", "description"}
    assert set(C.RUN_SPEC.names) - free_texts <= set(form.names)
    assert {"nproc_per_node", "nnodes", "node_rank", "master_port"} <= set(form.names)


def test_flatten_and_nest_are_inverse_and_name_unknown_keys():
    flat = C.flatten(EARLIER_CONFIG)
    assert flat["data.num_classes"] == 20 and "data" not in flat
    assert C.nest(flat) == {k: v for k, v in EARLIER_CONFIG.items() if k != "loss_params"}  # an empty group
    assert C.nest(C.flatten({**EARLIER_CONFIG, "loss_params": {"margin": 0.2}}))["loss_params"] == {"margin": 0.2}
    with pytest.raises(C.ConfigError, match=r"unknown config key\(s\) lr_typo"):
        C.flatten({**EARLIER_CONFIG, "lr_typo": 1})
    with pytest.raises(C.ConfigError, match=r"unknown data key\(s\) rooot; known: format, root"):
        C.flatten({**EARLIER_CONFIG, "data": {"rooot": "x"}})
    with pytest.raises(C.ConfigError, match="loss_params must be an object"):
        C.flatten({**EARLIER_CONFIG, "loss_params": [1]})


def test_earlier_configs_and_presets_load_unchanged():
    cfg = C.TrainConfig.from_dict(EARLIER_CONFIG)
    assert C.config_errors(cfg, check_paths=False) == []
    assert (cfg.s, cfg.m2, cfg.data.num_classes, cfg.loss_params.margin) == (32.0, 0.3, 20, None)
    out = cfg.to_dict()
    assert {k: out[k] for k in EARLIER_CONFIG if k != "loss_params"} == \
        {k: v for k, v in EARLIER_CONFIG.items() if k != "loss_params"}
    assert set(out["loss_params"].values()) == {None}
    # a file may hold any value the loss accepts, beyond the lesson sliders' range (s <= 64, m3 <= 0.6)
    wide = C.TrainConfig.from_dict({**EARLIER_CONFIG, "s": 100.0, "loss": "combined", "m3": 0.8})
    assert C.config_errors(wide, check_paths=False) == []
    for name in C.list_presets():
        raw = C.read_config_json(name)
        again = C.load_config(name).to_dict()
        assert {k: again[k] for k in raw if k != "loss_params"} == {k: v for k, v in raw.items() if k != "loss_params"}


def test_every_problem_is_listed_once_naming_its_key():
    bad = {**EARLIER_CONFIG, "lr": "0.1", "batch_size": 1.0, "dropout": 1.0, "pin_memory": "yes", "amp": "fp8",
           "s": 0, "loss_params": {"m": 2.5}, "val_targets": "lfw", "output": " ", "warmup_epoch": 3,
           "data": {"format": "synthetic", "num_classes": None, "num_images": 80}}
    errors = C.config_errors(C.TrainConfig.from_dict(bad), check_paths=False)
    assert errors == [
        "dropout must be in [0, 1), got 1.0",
        "s must be > 0 or null, got 0",
        "loss_params.m must be an integer or null, got 2.5",
        "amp 'fp8' is unknown; choose one of none, fp16, bf16",
        "batch_size must be an integer >= 2, got 1.0",
        "lr must be > 0, got '0.1'",  # text is never read as a number in a file
        "pin_memory must be true or false, got 'yes'",
        "val_targets must be a list of non-empty texts, got 'lfw'",
        "output must be a non-empty text, got ' '",
        "warmup_epoch must be in [0, num_epoch), got 3.0",
        "data.num_classes is required for synthetic data",
    ]  # the loss rule did not run (s failed), nor a second message for any key


def test_rules_run_when_their_keys_are_valid():
    cfg = C.TrainConfig.from_dict({**EARLIER_CONFIG, "loss": "softmax", "sample_rate": 0.5, "lr": -1,
                                   "loss_params": {"margin": 0.2}, "val_targets": ["lfw"],
                                   "data": {"format": "rec", "root": None}})
    errors = C.config_errors(cfg, check_paths=False)
    assert "lr must be > 0, got -1" in errors
    assert any(e.startswith("sample_rate < 1 needs Partial FC") for e in errors)
    assert "data.root (the rec data folder) is required" in errors
    assert any(e.startswith("val_targets given by name") for e in errors)


def test_launch_form_round_trips_every_preset():
    for name in C.list_presets():
        raw = C.read_config_json(name)
        root = raw["data"]["root"]
        spec = L.launch_spec(datasets={"rec": [Path(root)] if root else [], "folder": [], "bin": []},
                             default_preset=name)
        values = spec.validate(spec.defaults())
        assert values["data.root"] == (root or "") and values["val_targets"] == ()  # names, not .bin files found
        cfg = L.config_from_values(values)
        assert C.config_errors(C.TrainConfig.from_dict(cfg), check_paths=False) == [], name
        before, after = (C.resolve_config(C.TrainConfig.from_dict(c)).to_dict() for c in (raw, cfg))
        for d in (before, after):
            for k in ("val_targets", "loss_params"):  # easy_margin: null (the default) vs false
                d.pop(k)
        assert after == before, name


def test_launch_form_conventions():
    values = L.values_from_config({"loss": "cosface", "max_steps": None, "data": {"num_images": None}})
    assert values["m3"] == 0.35 and values["s"] == 64.0  # null shows the loss's paper value
    assert values["max_steps"] == 0 and values["data.num_images"] == 0  # an optional integer shows 0 for null
    assert values["data.root"] == ""  # no data set
    cfg = L.config_from_values({**values, "loss": "arcface", "m2": 0.4, "m3": 0.2}, base={})
    assert cfg["m2"] == 0.4 and cfg["m3"] is None and cfg["max_steps"] is None  # m3: arcface does not use it
    assert cfg["data"]["root"] is None
    assert cfg["loss_params"]["easy_margin"] is False and cfg["loss_params"]["margin"] is None
    assert L.loss_values("arcface") == {"s": 64.0, "m2": 0.5, "loss_params.easy_margin": False}


def test_set_key_sets_one_nested_key_or_a_whole_group():
    cfg = {"data": {"format": "rec", "root": "a"}}
    C.set_key(cfg, "data.root", "b")
    C.set_key(cfg, "lr", 0.2)
    assert cfg == {"data": {"format": "rec", "root": "b"}, "lr": 0.2}
    C.set_key(cfg, "data", {"format": "synthetic"})
    assert cfg["data"] == {"format": "synthetic"}


def test_cli_set_reports_an_unknown_nested_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCFACE_VIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ARCFACE_VIZ_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("ARCFACE_VIZ_REGISTRY", str(tmp_path / "registry.sqlite3"))
    assert cli_main(["runs", "launch", "--config", "tiny_cpu", "--set", "data.rooot=x"]) == 2
    err = capsys.readouterr().err
    assert "unknown data key(s) rooot" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["runs", "launch", "--config", "tiny_cpu", "--set", "data.num_classes=1"]) == 2
    assert "data.num_classes must be an integer >= 2 or null, got 1" in capsys.readouterr().err


def test_param_check_optional_and_open_bounds():
    lr = Param("lr", "float", 0.1, "learning rate", min=0.0, min_open=True)
    assert lr.check(1) == 1.0 and lr.coerce("0.5") == 0.5
    with pytest.raises(ParamError, match=r"^lr must be > 0, got 0$"):
        lr.check(0)
    with pytest.raises(ParamError, match="learning rate: 0 is outside the allowed range > 0"):
        lr.coerce("0")
    steps = Param("max_steps", "int", None, min=1, optional=True)
    assert steps.check(None) is None and steps.coerce("none") is None and steps.to_text(None) == "none"
    assert steps.coerce(steps.to_text(5)) == 5
    with pytest.raises(ParamError, match="an integer >= 1 or null, got True"):
        steps.check(True)
    frac = Param("f", "float", 1.0, min=0.0, max=1.0, max_open=True)
    assert frac.bounds_text() == "in [0, 1)" and not frac.in_range(1.0) and frac.in_range(0.0)
    closed = Param("s", "float", 1.0, "scale", min=1.0, max=64.0)
    with pytest.raises(ParamError, match="scale: 65 is outside the allowed range 1.0–64.0"):  # lessons' message
        closed.coerce(65)
    items = Param("val_targets", "list", ())
    assert items.coerce("lfw, cfp_fp,") == ["lfw", "cfp_fp"] and items.to_text(["a", "b"]) == "a,b"
