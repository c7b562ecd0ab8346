"""arcface_viz.optim against torch.optim, step by step, and the import it avoids."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from arcface_viz.optim import SGD, Adam


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.PReLU(), torch.nn.Linear(7, 3))


def _run(make_opt, steps: int = 25, lr_change_at: int = 10) -> list[torch.Tensor]:
    """Train a small model on fixed data; the learning rate changes mid-run through param_groups."""
    model = _model()
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    for i in range(steps):
        if i == lr_change_at:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        rows = slice(i % 4 * 16, (i % 4 + 1) * 16)
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if i == 3:  # a parameter without a gradient this step is left alone, as torch.optim does
            model[1].weight.grad = None
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("fused", [None, False])
def test_adam_matches_torch_optim(fused):
    ours = _run(lambda ps: Adam(ps, lr=0.01, fused=fused))
    ref = _run(lambda ps: torch.optim.Adam(ps, lr=0.01, foreach=False))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any((a != p).any() for a, p in zip(ours, _model().parameters(), strict=True))  # it did train


def test_sgd_with_momentum_and_weight_decay_matches_torch_optim():
    ours = _run(lambda ps: SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4))
    ref = _run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=False))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_negative_learning_rate_is_refused():
    with pytest.raises(ValueError, match="learning rate"):
        Adam(_model().parameters(), lr=-1.0)


def test_training_does_not_import_torch_dynamo():
    """The reason this module exists: a live run must not pull torch._dynamo (~70 MB) into the app."""
    code = ("import sys\n"
            "from arcface_viz.training import build_toy_trainer\n"
            "from arcface_viz.image_training import build_image_trainer\n"
            "for opt in ('adam', 'sgd'):\n"
            "    build_toy_trainer(optimizer=opt, samples_per_class=20).advance(3)\n"
            "build_image_trainer({'dataset': 'digits', 'max_train': 200}).advance(3)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
