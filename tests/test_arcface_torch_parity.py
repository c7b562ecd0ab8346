"""Parity with insightface's arcface_torch: the learning rate of every step, and checkpoint key names.

The references are transcribed here from arcface_torch's code (``lr_scheduler.PolyScheduler`` until April
2023, ``lr_scheduler.PolynomialLRWarmup`` since, the optimizer and step counts of ``train_v2.py``, and
``backbones/iresnet.py``), not imported: the test fails if our trainer or backbones drift from them.  Whole
configs come from tests/arcface_torch_configs.py through our converter; a real tiny run checks the step
count, each step's lr and the saved ``model.pt``.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from arcface_torch_configs import CONFIGS

from arcface_viz.fullscale.backbones import IRESNET_LAYERS, get_backbone
from arcface_viz.fullscale.config import TrainConfig
from arcface_viz.fullscale.insightface import convert_text
from arcface_viz.fullscale.train import build_optimizer, lr_factor, schedule_steps, train

# --------------------------------------------------------------------------------- learning-rate schedule


class _ArcfaceTorchPoly(torch.optim.lr_scheduler.LRScheduler):
    """arcface_torch's PolyScheduler: lr = base·e/warmup while e < warmup, then base·(1 − (e − warmup) /
    (max_steps − warmup))², e the scheduler's step count.  Its constructor takes the base class's first
    step (e = 0) and then sets e back to −1; the training loop calls ``step()`` after every optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, max_steps: int, warmup_steps: int):
        self.base_lr, self.max_steps, self.warmup_steps, self.power = base_lr, max_steps, warmup_steps, 2
        super().__init__(optimizer, -1)
        self.last_epoch = -1

    def get_lr(self) -> list[float]:
        e, w = self.last_epoch, self.warmup_steps
        alpha = e / w if e < w else (1 - (e - w) / (self.max_steps - w)) ** self.power
        return [self.base_lr * alpha for _ in self.optimizer.param_groups]


class _ArcfaceTorchPolynomialLRWarmup(torch.optim.lr_scheduler.LRScheduler):
    """arcface_torch's PolynomialLRWarmup (since April 2023; train_v2.py leaves power = 1): the base class's first
    step (last_epoch 0) keeps the optimizer's lr; then base·e/warmup up to the warm-up's end, then each step
    multiplies the lr by ((1 − (e − w)/(t − w)) / (1 − (e − 1 − w)/(t − w)))^power; past t the lr stays."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_iters: float, total_iters: int, power: float = 1.0):
        super().__init__(optimizer, -1)
        self.total_iters, self.power, self.warmup_iters = total_iters, power, warmup_iters

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        if e == 0 or e > self.total_iters:
            return [group["lr"] for group in self.optimizer.param_groups]
        if e <= self.warmup_iters:
            return [base * e / self.warmup_iters for base in self.base_lrs]
        w, t = self.warmup_iters, self.total_iters
        decay = ((1.0 - (e - w) / (t - w)) / (1.0 - (e - 1 - w) / (t - w))) ** self.power
        return [group["lr"] * decay for group in self.optimizer.param_groups]


def _lrs_per_step(make_scheduler, steps: int, base_lr: float) -> list[float]:
    """The lr each of ``steps`` optimizer steps runs with, in arcface_torch's loop order (step, then schedule)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr, momentum=0.9, weight_decay=5e-4)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    return out


def _config_steps(num_image: int, batch_size: int, world_size: int, num_epoch: int, warmup_epoch: int):
    """arcface_torch's total_step and warmup_step of a config (train_v2.py)."""
    per_epoch = num_image // (batch_size * world_size)
    return per_epoch * num_epoch, per_epoch * warmup_epoch


@pytest.mark.parametrize("num_image,batch_size,world_size,num_epoch,warmup_epoch", [
    (600, 16, 2, 4, 0),    # no warm-up, as most arcface_torch configs
    (600, 16, 2, 4, 1),    # one warm-up epoch
    (1000, 8, 1, 20, 2),   # the ratio of the WebFace42M configs (warm-up 2 of 20 epochs)
    (96, 32, 3, 5, 4),     # one step per epoch, warm-up almost the whole run
])
def test_lr_of_every_step_matches_arcface_torch_poly_scheduler(num_image, batch_size, world_size, num_epoch,
                                                                 warmup_epoch):
    total, warmup = _config_steps(num_image, batch_size, world_size, num_epoch, warmup_epoch)
    base = 0.1
    theirs = _lrs_per_step(lambda opt: _ArcfaceTorchPoly(opt, base, total, warmup), total, base)
    # the trainer's scheduler: LambdaLR over lr_factor with the run's total and warm-up steps
    ours = _lrs_per_step(lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: lr_factor(i, total, warmup)), total, base)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert len(set(ours)) > 2  # the schedule really moves


@pytest.mark.parametrize("num_image,batch_size,world_size,num_epoch,warmup_epoch", [
    (600, 16, 2, 4, 0), (600, 16, 2, 4, 1), (1000, 8, 1, 20, 2), (96, 32, 3, 5, 4)])
def test_lr_of_every_step_matches_arcface_torch_polynomial_lr_warmup(num_image, batch_size, world_size, num_epoch,
                                                                     warmup_epoch):
    total, warmup = _config_steps(num_image, batch_size, world_size, num_epoch, warmup_epoch)
    theirs = _lrs_per_step(lambda opt: _ArcfaceTorchPolynomialLRWarmup(opt, warmup, total), total, 0.1)
    ours = _lrs_per_step(lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: lr_factor(i, total, warmup, "polynomial_lr_warmup")), total, 0.1)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)
    assert len(set(ours)) > 2


def _train_v2_optimizer(cfg: dict, groups: list[dict], world_size: int):
    """arcface_torch's train_v2.py for a config's keys: SGD(lr, momentum=0.9, weight_decay) or AdamW(lr,
    weight_decay); total_step and warmup_step from num_image // (batch_size · world_size); PolynomialLRWarmup."""
    per_epoch = cfg["num_image"] // (cfg["batch_size"] * world_size)
    warmup, total = per_epoch * cfg["warmup_epoch"], per_epoch * cfg["num_epoch"]
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return opt, _ArcfaceTorchPolynomialLRWarmup(opt, warmup, total), total, warmup


def _groups() -> list[dict]:
    return [{"params": [torch.nn.Parameter(torch.zeros(2))]}, {"params": [torch.nn.Parameter(torch.zeros(3))]}]


@pytest.mark.parametrize("name,substitute", [
    ("ms1mv3_r50", {}),
    ("glint360k_r100", {}),
    ("wf12m_conflict_r50_pfc03_filter04", {}),  # warm-up of num_epoch // 10 epochs
    ("wf42m_pfc03_40epoch_8gpu_vit_t", {"network": "r50"}),  # AdamW; we have no ViT, so r50 stands in
])
def test_whole_configs_give_arcface_torchs_optimizer_and_lr_at_every_step(name, substitute):
    """A converted config trains with the optimizer of train_v2.py and the lr it would have at every one of its
    steps (8 GPUs; 100k–400k steps), from our trainer's own schedule_steps and build_optimizer."""
    from arcface_viz.fullscale.insightface import ARCFACE_TORCH_BASE, parse_config

    text = CONFIGS[name] + "".join(f"config.{k} = {v!r}\n" for k, v in substitute.items())
    raw = parse_config(text, name, ARCFACE_TORCH_BASE)
    cfg = TrainConfig.from_dict(convert_text(text, name)[0])
    world = 8
    t_opt, t_sched, t_total, t_warmup = _train_v2_optimizer(raw, _groups(), world)
    _, total, warmup = schedule_steps(cfg, cfg.data.num_images, world)
    o_opt, o_sched = build_optimizer(cfg, _groups(), total, warmup)
    assert (total, warmup) == (t_total, t_warmup)
    assert type(o_opt) is type(t_opt)
    for ours, theirs in zip(o_opt.param_groups, t_opt.param_groups, strict=True):
        assert {k: v for k, v in ours.items() if k != "params"} == {k: v for k, v in theirs.items() if k != "params"}
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler steps without optimizer steps
        for _ in range(total):
            lrs.append((o_opt.param_groups[0]["lr"], t_opt.param_groups[0]["lr"]))
            o_sched.step()
            t_sched.step()
    ours, theirs = zip(*lrs, strict=True)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert max(ours) == pytest.approx(raw["lr"]) and ours[-1] < raw["lr"] * 1e-4


def test_lr_schedule_hand_values():
    """Steps 0 and 1 share arcface_torch's first value; then (1 − (j − w)/(T − w))², j = step − 1."""
    assert [lr_factor(k, 10, 4) for k in range(6)] == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0])
    assert lr_factor(7, 10, 4) == pytest.approx((1 - 2 / 6) ** 2)
    assert [lr_factor(k, 4, 0) for k in range(4)] == pytest.approx([1, 1, (3 / 4) ** 2, (2 / 4) ** 2])
    # PolynomialLRWarmup: step 0 at the base lr, then k/w, then linear
    assert [lr_factor(k, 10, 4, "polynomial_lr_warmup") for k in range(7)] == \
        pytest.approx([1, 0.25, 0.5, 0.75, 1, 5 / 6, 4 / 6])


# ----------------------------------------------------------------------------------- checkpoint key names


def _arcface_torch_iresnet_entries(layers: tuple[int, int, int, int], num_features: int = 512) -> list:
    """(name, shape) of every state_dict entry of arcface_torch's iresnet, in registration order.

    Its architecture: conv1 (3→64, 3×3), bn1, prelu; four stages of IBasicBlock (bn1, conv1 3×3, bn2, prelu,
    conv2 3×3 with the stage's stride 2, bn3; the first block of every stage has downsample = 1×1 conv + BN);
    then bn2 (512), dropout, fc (512·7·7 → num_features) and the BatchNorm1d ``features``.
    """
    out: list[tuple[str, tuple[int, ...]]] = []

    def bn(name: str, c: int) -> None:
        out.extend([(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
                    (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())])

    out.append(("conv1.weight", (64, 3, 3, 3)))
    bn("bn1", 64)
    out.append(("prelu.weight", (64,)))
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True), start=1):
        for b in range(blocks):
            p, cin = f"layer{stage}.{b}", inplanes if b == 0 else planes
            bn(f"{p}.bn1", cin)
            out.append((f"{p}.conv1.weight", (planes, cin, 3, 3)))
            bn(f"{p}.bn2", planes)
            out.append((f"{p}.prelu.weight", (planes,)))
            out.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
            bn(f"{p}.bn3", planes)
            if b == 0:
                out.append((f"{p}.downsample.0.weight", (planes, cin, 1, 1)))
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    bn("bn2", 512)
    out += [("fc.weight", (num_features, 512 * 7 * 7)), ("fc.bias", (num_features,))]
    bn("features", num_features)
    return out


@pytest.mark.parametrize("name", ["iresnet18", "iresnet50", "iresnet100"])
def test_model_pt_loads_into_arcface_torch_iresnet_strictly(name):
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation cost
        ours = get_backbone(name)
    theirs = _arcface_torch_iresnet_entries(IRESNET_LAYERS[name])
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == theirs
    # and the other way: a checkpoint of theirs (their names and shapes) loads into ours with strict=True
    ckpt = {k: torch.zeros(shape, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32,
                           device="meta") for k, shape in theirs}
    assert not ours.load_state_dict(ckpt, strict=True, assign=True).missing_keys


# ------------------------------------------------------------------------------------------- a real tiny run


def test_a_real_run_has_arcface_torchs_steps_and_lrs_and_its_model_pt_loads_into_iresnet(tmp_path):
    """iresnet18 on 12 RecordIO images, batch 2, one process, 2 held out for embeddings.npz: the schedule
    counts every image (12 // 2 = 6 steps per epoch, as arcface_torch's num_image // global batch, although the
    loader passes over 10), warm-up 0.5 epoch = 3 steps; every logged lr is arcface_torch's; model.pt has
    exactly the names and shapes of arcface_torch's iresnet18 (no ``module.`` prefix, no extra buffers)."""
    from toy_data.faces import make_synthetic_faces

    root = tmp_path / "faces"
    make_synthetic_faces(root, num_identities=4, images_per_identity=3, seed=0, formats=("rec",))
    out = tmp_path / "run"
    cfg = TrainConfig.from_dict({
        "network": "iresnet18", "loss": "arcface", "loss_params": {"detach_margin": True}, "batch_size": 2,
        "lr": 0.05, "num_epoch": 1, "warmup_epoch": 0.5, "data": {"format": "rec", "root": str(root)},
        "num_workers": 0, "val_targets": [], "checkpoint_every": 1000, "log_every": 1, "seed": 3,
        "output": str(out), "embeddings_sample": 2})
    train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, 7))
    # the lr logged after step k is the one step k + 1 (0-based index k) runs with
    assert [r["lr"] for r in steps] == pytest.approx([0.05 * lr_factor(k, 6, 3) for k in range(1, 7)])
    saved = torch.load(out / "model.pt", weights_only=True)
    theirs = _arcface_torch_iresnet_entries(IRESNET_LAYERS["iresnet18"])
    assert [(k, tuple(v.shape)) for k, v in saved.items()] == theirs
    assert all(v.dtype == (torch.long if k.endswith("num_batches_tracked") else torch.float32)
               for k, v in saved.items())
    fresh = get_backbone("iresnet18")
    assert not fresh.load_state_dict(saved, strict=True).missing_keys
    assert json.loads((out / "config.json").read_text())["loss_params"]["detach_margin"] is True
