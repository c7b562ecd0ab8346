"""The full-scale trainer with the losses after ArcFace (issue 14): every name is a valid run config whose resolved
form is JSON, and a stateful loss trains with Partial FC, logs its state and saves it in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from arcface_viz.fullscale.config import TrainConfig, config_errors, resolve_config
from arcface_viz.fullscale.partial_fc import supports
from arcface_viz.fullscale.train import train
from arcface_viz.losses import AFTER_ARCFACE, LOSSES


def _cfg(tmp_path, loss: str, **over) -> TrainConfig:
    raw = {"network": "mobilefacenet", "embedding_size": 32, "loss": loss, "s": None, "m1": None, "m2": None,
           "m3": None, "batch_size": 4, "lr": 0.05, "num_epoch": 1, "max_steps": 3,
           "data": {"format": "synthetic", "num_classes": 6, "num_images": 24}, "num_workers": 0, "flip": False,
           "val_targets": [], "checkpoint_every": 3, "log_every": 1, "output": str(tmp_path / loss),
           "embeddings_sample": 4, "pin_memory": False, "channels_last": False, **over}
    return TrainConfig.from_dict(raw)


@pytest.mark.parametrize("name", AFTER_ARCFACE)
def test_every_new_loss_is_a_valid_run_config_with_a_json_resolved_form(tmp_path, name):
    cfg = _cfg(tmp_path, name)
    assert config_errors(cfg, check_paths=False) == []
    assert supports(name)  # Partial FC shards it
    resolved = resolve_config(cfg)
    text = json.dumps(resolved.to_dict())  # no tensor (AdaCos's s is running state) in the file
    assert json.loads(text)["loss"] == name
    if "s" in LOSSES[name].state:
        assert resolved.s is None  # starts from the run's class count, not from resolve_config's 2 classes
    else:
        assert resolved.s == 64.0 and isinstance(resolved.s, float)


def test_k_and_the_new_parameters_are_config_keys(tmp_path):
    cfg = _cfg(tmp_path, "subcenter_arcface", loss_params={"k": 0})
    assert any("k" in e for e in config_errors(cfg, check_paths=False))
    cfg = _cfg(tmp_path, "elasticface_arc", loss_params={"sigma": 0.0175, "plus": True})
    assert config_errors(cfg, check_paths=False) == []


@pytest.mark.parametrize("loss,keys", [("adaface", ("batch_mean", "batch_std")), ("curricularface", ("t",)),
                                       ("adacos", ("s",))])
def test_stateful_loss_trains_logs_and_checkpoints_its_state(tmp_path, loss, keys):
    cfg = _cfg(tmp_path, loss)
    train(cfg)
    out = tmp_path / loss
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    states = [r["margin_state"] for r in records if r["kind"] == "train"]
    assert len(states) == 3 and all(set(s) == set(keys) for s in states)
    assert states[0] != states[-1]  # it moves
    ckpt = torch.load(out / "checkpoints" / "rank_0.pt", weights_only=False)
    for key in keys:
        assert ckpt["head"][f"margin_loss.{key}"].item() == pytest.approx(states[-1][key], rel=1e-6)
