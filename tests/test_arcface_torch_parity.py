"""Parity with insightface's arcface_torch: the learning rate of every step, and checkpoint key names.

Both references are transcribed here from arcface_torch's design (``lr_scheduler.PolyScheduler`` and
``backbones/iresnet.py``), not imported: the test fails if our trainer or backbones drift from them.
"""

from __future__ import annotations

import pytest
import torch

from arcface_viz.fullscale.backbones import IRESNET_LAYERS, get_backbone
from arcface_viz.fullscale.train import lr_factor

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


def test_lr_schedule_hand_values():
    """Steps 0 and 1 share arcface_torch's first value; then (1 − (j − w)/(T − w))², j = step − 1."""
    assert [lr_factor(k, 10, 4) for k in range(6)] == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0])
    assert lr_factor(7, 10, 4) == pytest.approx((1 - 2 / 6) ** 2)
    assert [lr_factor(k, 4, 0) for k in range(4)] == pytest.approx([1, 1, (3 / 4) ** 2, (2 / 4) ** 2])


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
