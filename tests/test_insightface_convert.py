"""Reading insightface arcface_torch configs (``configs/*.py``) into our run config: parsed with ast, never run.

The configs are transcriptions of arcface_torch's own files (tests/arcface_torch_configs.py); the learning rate
of every step for converted configs is checked in tests/test_arcface_torch_parity.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arcface_torch_configs import BASE_PY, CONFIGS, write_configs

from arcface_viz.fullscale.config import TrainConfig, config_errors, load_config
from arcface_viz.fullscale.insightface import (
    ARCFACE_TORCH_BASE,
    ConvertError,
    convert_file,
    convert_text,
    parse_config,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    return write_configs(tmp_path_factory.mktemp("arcface_torch"))


def test_the_transcribed_base_equals_arcface_torchs_base_py():
    assert parse_config(BASE_PY, "base.py") == ARCFACE_TORCH_BASE


def test_ms1mv3_r50(configs):
    cfg, notes = convert_file(configs / "ms1mv3_r50.py")
    assert notes == []
    assert (cfg["network"], cfg["loss"], cfg["s"], cfg["m2"], cfg["loss_params"]["detach_margin"]) == \
        ("iresnet50", "arcface", 64.0, 0.5, True)
    assert (cfg["amp"], cfg["batch_size"], cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["weight_decay"]) == \
        ("fp16", 128, "sgd", 0.1, 0.9, 5e-4)
    assert (cfg["num_epoch"], cfg["warmup_epoch"], cfg["lr_schedule"], cfg["sample_rate"]) == \
        (20, 0.0, "polynomial_lr_warmup", 1.0)
    assert cfg["data"] == {"format": "rec", "root": "/train_tmp/ms1m-retinaface-t1", "num_classes": 93431,
                           "num_images": 5179510}
    assert cfg["val_targets"] == ["lfw", "cfp_fp", "agedb_30"]
    assert (cfg["val_every"], cfg["log_every"], cfg["seed"], cfg["num_workers"]) == (2000, 10, 2048, 2)
    assert (cfg["grad_clip"], cfg["dropout"], cfg["flip"]) == (5.0, 0.0, True)  # fixed in train_v2.py
    assert cfg["output"] == "work_dirs/ms1mv3_r50"  # output = None: arcface_torch's work_dirs/<config name>
    assert config_errors(TrainConfig.from_dict(cfg), check_paths=False) == []


def test_filtered_cosface_with_partial_fc_and_an_expression(configs):
    cfg, _ = convert_file(configs / "wf12m_conflict_r50_pfc03_filter04.py")
    assert (cfg["loss"], cfg["m3"], cfg["interclass_filtering_threshold"], cfg["sample_rate"]) == \
        ("cosface", 0.4, 0.4, 0.3)
    assert cfg["warmup_epoch"] == 2.0  # config.num_epoch // 10
    assert cfg["loss_params"]["detach_margin"] is None  # CosFace's margin has slope 1: nothing to detach
    glint, _ = convert_file(configs / "glint360k_r100.py")
    assert (glint["network"], glint["loss"], glint["weight_decay"], glint["data"]["num_classes"]) == \
        ("iresnet100", "cosface", 1e-4, 360232)


def test_base_py_beside_the_file_or_arcface_torchs(tmp_path, configs):
    bare = write_configs(tmp_path / "bare", with_base=False)
    assert convert_file(bare / "ms1mv3_r50.py") == convert_file(configs / "ms1mv3_r50.py")
    # a base.py of one's own is read: its keys reach configs that do not set them
    (bare / "base.py").write_text(BASE_PY.replace("config.seed = 2048", "config.seed = 7"))
    assert convert_file(bare / "ms1mv3_r50.py")[0]["seed"] == 7
    assert convert_text(CONFIGS["ms1mv3_r50"], "ms1mv3_r50") == convert_file(configs / "ms1mv3_r50.py")


@pytest.mark.parametrize("name,needle", [
    ("wf42m_pfc03_40epoch_8gpu_vit_t", "network 'vit_t_dp005_mask0': not available here"),
    ("3millions", "warmup_epoch must be >= 0, got -1"),
])
def test_configs_we_cannot_train_name_the_key(configs, name, needle):
    with pytest.raises(ConvertError, match=needle):
        convert_file(configs / f"{name}.py")


@pytest.mark.parametrize("line,needle", [
    ("config.margin_list = (1.0, 0.3, 0.2)", "with m3 > 0 arcface_torch applies only the CosFace margin"),
    ("config.margin_list = (1.35, 0.0, 0.0)", "supports only (1, m2, 0) and (1, 0, m3 > 0)"),
    ("config.momentum = 0.8", "momentum 0.8: arcface_torch's train_v2.py ignores it"),
    ("config.gradient_acc = 4", "gradient accumulation is not supported"),
    ("config.using_wandb = True", "Weights & Biases"),
    ("config.resume = True", "runs resume"),
    ("config.lr_func = 'cosine'", "lr_func: not an arcface_torch key we support"),
    ("config.optimizer = 'lamb'", "optimizer 'lamb' is unknown"),
    ("config.rec = os.path.join('/data', 'ms1m')", "job.py line LAST: config.rec"),
    ("import os", "job.py line LAST: only `config = edict()` and `config.KEY = literal` are read"),
    ("config.lr = config.lr_base * 2", "config.lr_base is read before it is set"),
    ("config.num_image = 10 ** 10 ** 10", "an exponent above 64"),
    ("config.lr = 'a' * 3", "arithmetic on 'a'"),
])
def test_every_problem_is_named(line, needle):
    text = CONFIGS["ms1mv3_r50"] + line + "\n"
    with pytest.raises(ConvertError) as err:
        convert_text(text, "job")
    message = str(err.value)
    needle = needle.replace("LAST", str(len(text.splitlines())))
    assert needle in message and "\n" not in message


def test_two_problems_are_both_named():
    text = CONFIGS["ms1mv3_r50"] + "config.dali_aug = True\nconfig.network = 'r200'\n"
    with pytest.raises(ConvertError) as err:
        convert_text(text, "job")
    assert "dali_aug" in str(err.value) and "network 'r200'" in str(err.value)


def test_the_file_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = CONFIGS["ms1mv3_r50"] + f"config.x = __import__('os').system('touch {marker}')\n"
    with pytest.raises(ConvertError, match="not a literal"):
        convert_text(text, "evil")
    with pytest.raises(ConvertError, match="not a Python file"):
        convert_text("config = edict(\n", "broken")
    with pytest.raises(ConvertError, match="no `config = edict"):
        convert_text("\"\"\"A docstring only.\"\"\"\n", "other")
    assert not marker.exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "arcface_viz", "runs", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_convert(configs, tmp_path):
    out = tmp_path / "ours.json"
    done = _cli("convert", str(configs / "wf12m_conflict_r50_pfc03_filter04.py"), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "runs launch --config" in done.stdout
    cfg = load_config(out)  # our loader takes it as it is
    assert (cfg.loss, cfg.m3, cfg.interclass_filtering_threshold, cfg.lr_schedule) == \
        ("cosface", 0.4, 0.4, "polynomial_lr_warmup")
    printed = _cli("convert", str(configs / "ms1mv3_r50.py"), cwd=tmp_path)
    assert printed.returncode == 0 and json.loads(printed.stdout)["network"] == "iresnet50"

    bad = _cli("convert", str(configs / "wf42m_pfc03_40epoch_8gpu_vit_t.py"), "--out", str(tmp_path / "x.json"),
               cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "x.json").exists()
    assert len(bad.stderr.strip().splitlines()) == 1 and "network 'vit_t_dp005_mask0'" in bad.stderr
    missing = _cli("convert", str(tmp_path / "nope.py"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read it" in missing.stderr
