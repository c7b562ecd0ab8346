"""The trainer end to end: a real 2-process torchrun run (gloo) on a generated RecordIO set, then resume."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arcface_viz.fullscale.backbones import get_backbone
from arcface_viz.fullscale.config import ConfigError, TrainConfig, config_errors, list_presets, load_config
from arcface_viz.fullscale.datasets import build_dataset, held_out_indices
from arcface_viz.fullscale.train import lr_factor, main, train
from arcface_viz.stats import load_embeddings_npz
from toy_data.faces import make_synthetic_faces, make_verification_bin

REPO = Path(__file__).resolve().parents[1]
N_ID, PER_ID, HELD = 8, 6, 12  # 48 images, 12 held out: 36 train = 2 ranks × 4 steps × batch 4 (+ 4 dropped)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(config: Path, nproc: int = 2, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "arcface_viz.train", "--config", str(config), *extra]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)


def _train_py(config: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "arcface_viz.train", "--config", str(config), *extra]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _config(root: Path, out: Path, **over) -> dict:
    cfg = {
        "network": "mobilefacenet", "loss": "arcface", "s": 64.0, "m2": 0.5, "batch_size": 4, "lr": 0.05,
        "num_epoch": 2, "max_steps": 4, "data": {"format": "rec", "root": str(root)}, "num_workers": 1,
        "flip": True, "val_targets": ["lfw"], "val_every": 2, "checkpoint_every": 2, "log_every": 1, "seed": 7,
        "output": str(out), "embeddings_sample": HELD,
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    make_synthetic_faces(root, num_identities=N_ID, images_per_identity=PER_ID, seed=0, formats=("rec",))
    make_verification_bin(root / "lfw.bin", num_identities=6, pairs=20, seed=0)
    return root


@pytest.fixture(scope="module")
def two_rank_run(faces, tmp_path_factory):
    """Run 4 steps on 2 ranks, then resume to step 6 (crossing into epoch 1)."""
    work = tmp_path_factory.mktemp("run")
    out = work / "out"
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps(_config(faces, out)))
    first = _torchrun(cfg_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    snapshot = {
        "metrics": _metrics(out),
        "latest": json.loads((out / "checkpoints" / "latest.json").read_text()),
        "shards": [torch.load(out / "checkpoints" / f"rank_{r}.pt", weights_only=False) for r in range(2)],
        "npz": load_embeddings_npz(out / "embeddings.npz"),
        "npz_raw": dict(np.load(out / "embeddings.npz")),
        "config": json.loads((out / "config.json").read_text()),
        "log": (out / "train.log").read_text(),
    }
    return faces, work, out, snapshot


def test_two_process_run_writes_the_run_directory(two_rank_run):
    _, _, out, snap = two_rank_run
    metrics = snap["metrics"]
    train_lines = [m for m in metrics if m["kind"] == "train"]
    assert [m["step"] for m in train_lines] == [1, 2, 3, 4]
    for m in train_lines:
        assert set(m) == {"kind", "time", "step", "epoch", "loss", "lr", "samples_per_sec", "eta_s"}
        assert m["epoch"] == 0 and np.isfinite(m["loss"]) and m["loss"] > 0 and m["samples_per_sec"] > 0
    assert train_lines[-1]["eta_s"] == 0 and train_lines[0]["lr"] > train_lines[-1]["lr"]  # polynomial decay
    val = [m for m in metrics if m["kind"] == "val"]
    assert [(m["step"], m["target"]) for m in val] == [(2, "lfw"), (4, "lfw")]
    for m in val:
        assert 0.0 <= m["acc"] <= 1.0 and m["std"] >= 0 and 0.0 <= m["threshold"] <= 4.0
    assert metrics[-1]["kind"] == "done" and metrics[-1]["step"] == 4
    assert snap["latest"] == {"step": 4, "world_size": 2}
    assert sorted(os.listdir(out / "checkpoints")) == ["latest.json", "rank_0.pt", "rank_1.pt"]  # no tmp/prev left

    # per-rank checkpoints hold the two Partial FC shards; together they are the gathered W
    s0, s1 = snap["shards"]
    assert (s0["rank"], s1["rank"], s0["step"], s1["step"]) == (0, 1, 4, 4)
    assert {"backbone", "head", "optimizer", "scheduler", "scaler", "rng", "epoch"} <= set(s0)
    w = torch.cat([s0["head"]["weight"], s1["head"]["weight"]])
    assert w.shape == (N_ID, 512)
    npz = snap["npz"]
    np.testing.assert_allclose(npz["weight"], w.numpy(), rtol=1e-6)
    # DDP kept the backbones identical
    for k, v in s0["backbone"].items():
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(v, s1["backbone"][k])

    # embeddings of held-out images: raw 512-D, labels of real identities, a 3-D projection on the sphere
    assert npz["embeddings"].shape == (HELD, 512) and npz["embeddings"].dtype == np.float32
    assert set(npz["labels"].tolist()) <= set(range(N_ID))
    e3 = snap["npz_raw"]["embeddings_3d"]
    assert e3.shape == (HELD, 3)
    np.testing.assert_allclose(np.linalg.norm(e3, axis=1), 1.0, rtol=1e-5)
    assert snap["npz_raw"]["weight_3d"].shape == (N_ID, 3)

    backbone = get_backbone("mobilefacenet")
    backbone.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    cfg = snap["config"]
    assert cfg["output"] == str(out) and cfg["m1"] == 1.0 and cfg["m3"] == 0.0
    assert cfg["data"]["num_classes"] == N_ID and cfg["val_targets"] == [str(two_rank_run[0] / "lfw.bin")]
    log = snap["log"]
    assert "samples/s" in log and "[lfw][4]" in log and "eta" in log


def test_resume_continues_from_the_checkpoint_step(two_rank_run):
    faces, work, out, snap = two_rank_run
    cfg_path = work / "config6.json"
    cfg_path.write_text(json.dumps(_config(faces, out, max_steps=6)))

    refused = _train_py(cfg_path)  # a fresh start would overwrite the run
    assert refused.returncode == 2 and "--resume" in refused.stderr
    wrong = _train_py(cfg_path, "--resume")  # 1 process cannot take over 2 shards
    assert wrong.returncode == 2
    assert "2 processes" in wrong.stderr and "same total number of processes" in wrong.stderr

    resumed = _torchrun(cfg_path, 2, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    metrics = _metrics(out)
    steps = [m["step"] for m in metrics if m["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # nothing repeated, nothing lost
    assert [m["epoch"] for m in metrics if m["kind"] == "train"][4:] == [1, 1]
    assert [m["step"] for m in metrics if m["kind"] == "done"] == [6]
    assert [m["step"] for m in metrics if m["kind"] == "val"] == [2, 4, 6]
    assert json.loads((out / "checkpoints" / "latest.json").read_text()) == {"step": 6, "world_size": 2}
    assert "resumed from" in (out / "train.log").read_text()
    # the resumed run started from the step-4 state: its optimizer kept the momentum buffers
    s6 = torch.load(out / "checkpoints" / "rank_1.pt", weights_only=False)
    assert s6["step"] == 6 and s6["epoch"] == 1 and s6["scheduler"]["last_epoch"] == 6
    assert not torch.equal(s6["head"]["weight"], snap["shards"][1]["head"]["weight"])


def test_invalid_configs_exit_2_with_every_problem(tmp_path, capsys):
    bad = _config(tmp_path / "nowhere", tmp_path / "out", network="r999", lr=-1, loss="softmax", sample_rate=0.5,
                  batch_size=1, amp="fp8")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    for text in ("network 'r999'", "lr must be > 0", "sample_rate < 1 needs Partial FC", "batch_size", "amp"):
        assert text in err
    path.write_text(json.dumps({**_config(tmp_path / "nowhere", tmp_path / "out"), "lr_typo": 1}))
    assert main(["--config", str(path)]) == 2
    assert "unknown config key(s) lr_typo" in capsys.readouterr().err
    path.write_text(json.dumps(_config(tmp_path / "nowhere", tmp_path / "out")))
    assert main(["--config", str(path), "--check"]) == 2
    assert "lacks train.rec" in capsys.readouterr().err


def test_presets():
    assert {"casia_r50", "ms1mv2_r100", "tiny_cpu", "synthetic_r50_speed"} <= set(list_presets())
    casia = load_config("casia_r50")
    assert (casia.network, casia.loss, casia.s, casia.m2, casia.batch_size, casia.lr) == \
        ("iresnet50", "arcface", 64.0, 0.5, 128, 0.1)
    assert casia.data.num_classes == 10572 and casia.val_targets == ["lfw", "cfp_fp", "agedb_30"]
    ms1 = load_config("ms1mv2_r100")
    assert (ms1.network, ms1.data.num_classes, ms1.num_epoch, ms1.weight_decay) == ("iresnet100", 85742, 20, 5e-4)
    assert load_config("tiny_cpu").data.format == "synthetic"
    # the insightface presets detach the margin, as arcface_torch since Dec 2022; the paper's CASIA setting does not
    assert ms1.loss_params.detach_margin is True and load_config("synthetic_r50_speed").loss_params.detach_margin
    assert not casia.loss_params.detach_margin
    assert "5,900 samples/s on 8 GPUs at batch 512" in load_config("synthetic_r50_speed").description
    assert any("lacks" in e or "not found" in e for e in config_errors(casia, check_paths=True))
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config("no_such_preset")


def test_lr_schedule_warmup_then_polynomial():
    # arcface_torch's one-step lag: step k uses j = max(k − 1, 0) (tests/test_arcface_torch_parity.py)
    assert lr_factor(0, 100, 10) == lr_factor(1, 100, 10) == 0.0
    assert lr_factor(10, 100, 10) == pytest.approx(0.9)
    assert lr_factor(11, 100, 10) == pytest.approx(1.0)
    assert lr_factor(56, 100, 10) == pytest.approx(0.25)  # (1 − 45/90)^2
    assert lr_factor(99, 100, 0) == pytest.approx(4e-4)  # (1 − 98/100)^2


def test_held_out_sample_keeps_every_identity_training(faces):
    cfg = TrainConfig(data=dataclasses.replace(TrainConfig().data, format="rec", root=str(faces)))
    ds = build_dataset(cfg, flip=False)
    held = held_out_indices(ds, HELD, seed=7)
    assert held.size == HELD and np.unique(held).size == HELD
    labels = np.array([ds.label_of(int(i)) for i in held])
    assert np.bincount(labels, minlength=N_ID).max() <= PER_ID // 2
    assert np.array_equal(held, held_out_indices(ds, HELD, seed=7))


def test_replicated_head_single_process(faces, tmp_path):
    """Softmax has no cosine head: it trains with a plain (replicated) head, no Partial FC."""
    cfg = TrainConfig.from_dict(_config(faces, tmp_path / "soft", loss="softmax", s=None, m2=None, max_steps=2,
                                        val_targets=[], num_workers=0, checkpoint_every=1, embeddings_sample=8))
    train(cfg)
    metrics = _metrics(tmp_path / "soft")
    assert [m["step"] for m in metrics if m["kind"] == "train"] == [1, 2] and metrics[-1]["kind"] == "done"
    npz = load_embeddings_npz(tmp_path / "soft" / "embeddings.npz")
    assert npz["weight"].shape == (N_ID, 512) and npz["embeddings"].shape == (8, 512)


def test_a_save_cut_short_falls_back_to_the_previous_checkpoint(tmp_path):
    """Killed between a rank's new file and latest.json: resume takes rank_{r}.prev.pt of the latest step."""
    from arcface_viz.fullscale.checkpoints import load_rank_checkpoint

    torch.save({"step": 6, "tag": "new"}, tmp_path / "rank_1.pt")
    torch.save({"step": 4, "tag": "old"}, tmp_path / "rank_1.prev.pt")
    assert load_rank_checkpoint(tmp_path, 1, 4)["tag"] == "old"
    assert load_rank_checkpoint(tmp_path, 1, 6)["tag"] == "new"
    with pytest.raises(ConfigError, match="rank 0 has no checkpoint of that step"):
        load_rank_checkpoint(tmp_path, 0, 4)
