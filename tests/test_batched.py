"""Many toy models trained as one (arcface_viz.batched, issue 11 goal 2, issue 15's sweeps): each member's run
is its run alone, weight for weight, whatever its seed, loss parameters, learning rate, warm-up or step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcface_viz.batched import _BatchedMarginCE, _margins, _params, advance_together, batchable, compatible
from arcface_viz.losses import _CosineMarginCE
from arcface_viz.training import build_toy_trainer

# Members that differ in everything a batch lets differ: seed (so data and initial weights), loss and its
# parameters, easy margin, learning rate, warm-up.
MEMBERS = [
    dict(loss="arcface", seed=0),
    dict(loss="cosface", m3=0.1, seed=1, lr=0.02),
    dict(loss="sphereface", seed=2, warmup_steps=30),
    dict(loss="combined", seed=3),
    dict(loss="norm_softmax", seed=4),
    dict(loss="arcface", easy_margin=True, s=10.0, seed=5),
]


def build(members, **common):
    return [build_toy_trainer(dict(dataset="fig3", samples_per_class=80, **m, **common)) for m in members]


def weights(trainer) -> list[torch.Tensor]:
    state = [p.detach().clone() for p in _params(trainer)]
    opt = trainer.optimizer
    for p in _params(trainer):
        s = opt.state.get(p)
        state += [x.clone() for x in (s if isinstance(s, tuple) else (s,)) if x is not None] if s is not None else []
    return state


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_each_member_is_its_run_alone_weight_for_weight(optimizer):
    alone, together = build(MEMBERS, optimizer=optimizer), build(MEMBERS, optimizer=optimizer)
    assert compatible(together)
    for chunk in (20, 7, 20, 13, 40):  # chunks of any size, like a page's frames
        want = [t.advance(chunk) for t in alone]
        got = advance_together(together, chunk)
        for a, b, ta, tb in zip(want, got, alone, together, strict=True):
            assert (a.step, a.loss, a.train_acc, a.test_acc, a.margin_scale, a.lr) == \
                   (b.step, b.loss, b.train_acc, b.test_acc, b.margin_scale, b.lr)
            for key in ("embeddings", "centres", "theta_deg"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            for x, y in zip(weights(ta), weights(tb), strict=True):
                assert torch.equal(x, y)
    assert together[0].step == 100


def test_adam_written_out_where_the_members_do_not_use_the_fused_kernel():
    alone, together = build(MEMBERS[:3]), build(MEMBERS[:3])
    for t in [*alone, *together]:
        t.optimizer.fused = False
    want = [t.advance(40) for t in alone]
    got = advance_together(together, 40)
    assert all(np.array_equal(a.embeddings, b.embeddings) for a, b in zip(want, got, strict=True))


def test_members_at_different_steps_and_a_member_going_on_alone():
    alone, together = build(MEMBERS[:3]), build(MEMBERS[:3])
    alone[0].advance(50)  # the first member started earlier (a visitor who pressed Train first)
    together[0].advance(50)
    for _ in range(3):
        want = [t.advance(20) for t in alone]
        got = advance_together(together, 20)
        assert all(np.array_equal(a.embeddings, b.embeddings) for a, b in zip(want, got, strict=True))
    assert [s.step for s in got] == [110, 60, 60]
    assert np.array_equal(alone[1].advance(20).centres, together[1].advance(20).centres)  # state written back


def test_a_setting_changed_between_chunks_applies_to_that_member_only():
    alone, together = build(MEMBERS[:2]), build(MEMBERS[:2])
    for trainers in (alone, together):
        trainers[0].set_loss_params(m2=0.35)
        trainers[1].set_lr(0.005)
    want = [t.advance(30) for t in alone]
    got = advance_together(together, 30)
    assert all(np.array_equal(a.embeddings, b.embeddings) for a, b in zip(want, got, strict=True))
    assert together[0].loss_fn.m2 == 0.35 and together[1].lr == 0.005 and together[0].lr == 0.01


def test_the_batched_loss_and_gradient_are_the_single_models():
    trainers = build(MEMBERS)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(trainers), 64, 2, generator=g, requires_grad=True)
    w = torch.randn(len(trainers), 8, 2, generator=g, requires_grad=True)
    labels = torch.randint(0, 8, (len(trainers), 64), generator=g)
    emb.data[0, :4] = w.data[0, labels[0, :4]]  # θ = 0 and θ = π: the clamp's ends
    emb.data[1, :4] = -w.data[1, labels[1, :4]]
    steps = [5, 5, 10, 5, 5, 5]  # the SphereFace member is in its warm-up
    loss = _BatchedMarginCE.apply(emb, w, labels, *_margins(trainers, steps, 64))
    gx, gw = torch.autograd.grad(loss.sum(), (emb, w))
    for i, t in enumerate(trainers):
        t.step = steps[i]
        t._apply_schedules()
        e, ww = emb[i].detach().requires_grad_(True), w[i].detach().requires_grad_(True)
        one = _CosineMarginCE.apply(e, ww, labels[i], t.loss_fn.s, *t.loss_fn.effective_margins(),
                                    t.loss_fn.easy_margin)
        dx, dw = torch.autograd.grad(one, (e, ww))
        assert torch.isfinite(gx[i]).all() and torch.isfinite(gw[i]).all()
        torch.testing.assert_close(loss[i], one, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(gx[i], dx, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(gw[i], dw, rtol=1e-5, atol=1e-7)


def test_what_cannot_be_batched_is_advanced_alone():
    softmax = build_toy_trainer({"loss": "softmax", "seed": 0})
    intra = build_toy_trainer({"loss": "arcface+intra", "seed": 0})
    wide = build_toy_trainer({"loss": "arcface", "seed": 1, "hidden": (32,)})
    plain = build_toy_trainer({"loss": "arcface", "seed": 2})
    assert not batchable(softmax) and not batchable(intra) and batchable(wide)
    assert not compatible([wide, plain])  # different widths
    twins = [build_toy_trainer({"loss": "softmax", "seed": 0}), build_toy_trainer({"loss": "arcface", "seed": 2})]
    got = advance_together([softmax, plain], 15)
    want = [t.advance(15) for t in twins]
    assert all(np.array_equal(a.embeddings, b.embeddings) for a, b in zip(want, got, strict=True))
