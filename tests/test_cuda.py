"""CUDA checks (marker ``cuda``): half-precision numerics of every loss, a Partial FC step, the lessons' trainers.

Deselected where there is no GPU (tests/conftest.py says how many); ``python bench/gpu_check.py`` runs them on
a GPU, and its ``--dry-run`` runs them on the CPU (ARCFACE_VIZ_CUDA_TESTS_ON_CPU=1) so their code stays alive.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arcface_viz.fullscale.partial_fc import PartialFC, supports
from arcface_viz.image_training import build_image_trainer
from arcface_viz.losses import LOSSES, make_loss
from arcface_viz.training import build_toy_trainer

pytestmark = pytest.mark.cuda

# every θ in [0, π] (both ends exactly), at the slider extremes of every parameter
THETAS = torch.linspace(0.0, math.pi, 361, dtype=torch.float64)
EXTREMES = [
    dict(s=64.0, m1=2.0, m2=1.0, m3=0.6, m=6, lam=0.0, margin=1.0),
    dict(s=1.0, m1=0.8, m2=0.0, m3=0.0, m=1, lam=100.0, margin=0.0),
    dict(s=64.0, m1=1.0, m2=1.0, m3=0.0, m=4, lam=5.0, margin=0.35, easy_margin=True),
]
HALF = [torch.float16, torch.bfloat16]


def _angle_batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-0 samples at every θ from W0 (at 0°), then a class-1 sample on W1 (120°) for the triplet terms."""
    rows = torch.stack([THETAS.cos(), THETAS.sin()], dim=1)
    w1 = torch.tensor([[math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)]], dtype=torch.float64)
    x = torch.cat([rows, w1]).float().to(device)
    y = torch.cat([torch.zeros(len(THETAS), dtype=torch.long), torch.ones(1, dtype=torch.long)]).to(device)
    return x, y


def _three_class_loss(name: str, params: dict, device: torch.device):
    loss = make_loss(name, 3, 2, **{k: v for k, v in params.items() if k in LOSSES[name].params})
    with torch.no_grad():
        angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
        loss.weight.copy_(torch.stack([angles.cos(), angles.sin()], dim=1))
    return loss.to(device)


def _assert_finite(name: str, value: torch.Tensor, grad_x: torch.Tensor, other_grads) -> None:
    assert torch.isfinite(value.float()).item(), (name, float(value))
    bad = (~torch.isfinite(grad_x.float())).any(dim=1).nonzero().flatten().cpu()
    bad = bad[bad < len(THETAS)]
    assert bad.numel() == 0, f"{name}: non-finite ∂L/∂x at θ = {THETAS[bad][:5].tolist()}"
    for g in other_grads:
        assert g is None or torch.isfinite(g.float()).all().item(), name


@pytest.mark.parametrize("dtype", HALF, ids=["fp16", "bf16"])
@pytest.mark.parametrize("params", EXTREMES, ids=["max", "min", "easy"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_finite_at_every_angle(cuda_device, name, params, dtype):
    """Every loss of the registry with its weights and inputs in fp16 / bf16."""
    loss = _three_class_loss(name, params, cuda_device).to(dtype)
    x, y = _angle_batch(cuda_device)
    x = x.to(dtype).requires_grad_(True)
    value = loss(x, y)
    grads = torch.autograd.grad(value, [x, *loss.parameters()], allow_unused=True)
    _assert_finite(name, value, grads[0], grads[1:])


@pytest.mark.parametrize("dtype", HALF, ids=["fp16", "bf16"])
@pytest.mark.parametrize("params", EXTREMES, ids=["max", "min", "easy"])
@pytest.mark.parametrize("name", [k for k in LOSSES if supports(k)])
def test_partial_fc_finite_at_every_angle_under_autocast(cuda_device, name, params, dtype):
    """The full-scale trainer's path: float32 centres, cosines under fp16 / bf16 autocast (Partial FC)."""
    head = PartialFC(name, 3, 2, amp_dtype=dtype, **{k: v for k, v in params.items() if k in LOSSES[name].params})
    with torch.no_grad():  # K rows per class for a loss with sub-centres: each class's centre K times
        head.weight.copy_(_three_class_loss(name, params, "cpu").weight.repeat_interleave(head.margin_loss.centres, 0))
    head = head.to(cuda_device)
    x, y = _angle_batch(cuda_device)
    x.requires_grad_(True)
    value = head(x, y)
    gx, gw = torch.autograd.grad(value, [x, head.weight])
    _assert_finite(name, value, gx, [gw])


@pytest.mark.parametrize("sample_rate", [0.2, 1.0])
@pytest.mark.parametrize("dtype", HALF, ids=["fp16", "bf16"])
def test_partial_fc_step_under_autocast_matches_float32(cuda_device, dtype, sample_rate):
    """Partial FC steps (ArcFace s=64, m=0.5) in fp16/bf16 autocast, fp16 with the trainer's gradient scaler:
    within a few steps the scaler finds a scale with finite gradients (it skips the steps that overflow), the
    unscaled gradients agree with float32's within 5 %, and SGD moves only the centres sampled that step."""
    torch.manual_seed(0)
    n_cls, d, b = 1000, 64, 32
    ref_head, head = [PartialFC("arcface", n_cls, d, sample_rate, seed=3, amp_dtype=amp, s=64.0, m2=0.5)
                      .to(cuda_device) for amp in (None, dtype)]
    x0 = torch.randn(b, d, device=cuda_device)
    y = torch.randint(0, n_cls, (b,), device=cuda_device)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(cuda_device.type, growth_interval=100, enabled=dtype == torch.float16)
    for _ in range(20):  # the scale halves after every overflow: 2^16 -> finite within a few steps
        ref_head.weight.grad = None
        x_ref = x0.clone().requires_grad_(True)
        ref = ref_head(x_ref, y)  # same seed: the same centres sampled as the half-precision head
        ref.backward()
        x = x0.clone().requires_grad_(True)
        before = head.weight.detach().clone()
        opt.zero_grad(set_to_none=True)
        loss = head(x, y)
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # the centres' gradient; x.grad stays scaled
        finite = bool(torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all())
        scaler.step(opt)
        scaler.update()
        if finite:
            break
        assert dtype == torch.float16, "bf16 has float32's range: its gradients should not overflow"
    assert finite, f"gradients still overflow at scale {scaler.get_scale()}"
    assert torch.isfinite(loss).item() and loss.item() == pytest.approx(ref.item(), rel=2e-2)
    for got, want in ((x.grad / scale, x_ref.grad), (head.weight.grad, ref_head.weight.grad)):
        assert (got - want).norm() <= 0.05 * want.norm()
    moved = (head.weight.detach() != before).any(dim=1)
    assert moved.any()
    if sample_rate < 1.0:
        assert head.last_index is not None and head.last_index.numel() == int(sample_rate * n_cls)
        used = torch.zeros(n_cls, dtype=torch.bool, device=cuda_device)
        used[head.last_index] = True
        assert not moved[~used].any()  # centres outside this step's sample kept their values


def test_toy_trainer_learns_on_the_device(cuda_device):
    tr = build_toy_trainer(loss="arcface", seed=0, device=cuda_device.type)
    first = tr.advance(50)
    last = tr.advance(250)
    assert tr.device.type == cuda_device.type and next(tr.model.parameters()).device.type == cuda_device.type
    assert np.isfinite(first.loss) and np.isfinite(last.loss) and last.loss < first.loss
    assert last.train_acc > first.train_acc or last.train_acc > 0.9
    assert np.isfinite(last.embeddings).all() and tr.seconds > 0


def test_image_trainer_learns_on_the_device(cuda_device):
    tr = build_image_trainer(dataset="digits", loss="arcface", dim=3, seed=0, device=cuda_device.type)
    first = tr.advance(10)
    last = tr.advance(60)
    assert next(tr.model.parameters()).device.type == cuda_device.type
    assert np.isfinite(first.loss) and np.isfinite(last.loss) and last.loss < first.loss
    acc, _ = tr.full_test()
    assert 0.0 <= acc <= 1.0 and tr.images_per_second > 0
