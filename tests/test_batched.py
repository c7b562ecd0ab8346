"""Many toy models trained as one (arcface_viz.batched, issue 11 goal 2, issue 15's sweeps): each member's run
is its run alone, weight for weight, whatever its seed, learning rate or step (exact batches); a sweep over loss
parameters and warm-ups agrees with its runs alone to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arcface_viz import batched
from arcface_viz.batched import _BatchMargin, _params, advance_together, batchable, compatible
from arcface_viz.margin import margin_cross_entropy
from arcface_viz.training import build_toy_trainer

# An exact batch: the same loss and margins, different seeds (so data and initial weights) and learning rates;
# then a second batch of CosFace members, and two members in their warm-up.
CLASS = [dict(loss="arcface", seed=s, lr=0.01 if s % 2 else 0.02) for s in range(4)] + \
        [dict(loss="cosface", m3=0.1, seed=s) for s in (10, 11)] + \
        [dict(loss="sphereface", warmup_steps=30, seed=s) for s in (20, 21)]
# A sweep: members that differ in everything a batch lets differ (loss and its parameters, easy margin,
# learning rate, warm-up, seed).
SWEEP = [
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


@pytest.fixture
def batches(monkeypatch):
    """The sizes of the batches advance_together trains (to check that batching happened)."""
    sizes: list[int] = []
    train = batched._train_together

    def spy(trainers, k, exact):
        sizes.append(len(trainers))
        return train(trainers, k, exact)

    monkeypatch.setattr(batched, "_train_together", spy)
    return sizes


def same_runs(alone, together, want, got) -> None:
    for a, b, ta, tb in zip(want, got, alone, together, strict=True):
        assert (a.step, a.loss, a.train_acc, a.test_acc, a.margin_scale, a.lr) == \
               (b.step, b.loss, b.train_acc, b.test_acc, b.margin_scale, b.lr)
        for key in ("embeddings", "centres", "theta_deg"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        for x, y in zip(weights(ta), weights(tb), strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_each_member_is_its_run_alone_weight_for_weight(optimizer, batches):
    alone, together = build(CLASS, optimizer=optimizer), build(CLASS, optimizer=optimizer)
    assert compatible(together)
    for chunk in (20, 7, 20, 13, 40):  # chunks of any size, like a page's frames
        same_runs(alone, together, [t.advance(chunk) for t in alone], advance_together(together, chunk))
    assert together[0].step == 100
    assert batches[:3] == [4, 2, 2]  # the ArcFace seeds, the CosFace seeds, the warm-up pair: three batches


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_sweep_agrees_with_its_runs_alone_to_rounding(optimizer, batches):
    """exact=False: one batch per margin formula, per-member margins as tensors.  The curve's constants past θ*
    are float32 per model there (double per run alone), so a run may drift from its run alone by rounding that
    training amplifies; after 200 steps we allow 2 % of the drawn test points and angles of a few degrees."""
    alone, together = build(SWEEP, optimizer=optimizer), build(SWEEP, optimizer=optimizer)
    for _ in range(10):
        want = [t.advance(20) for t in alone]
        got = advance_together(together, 20, exact=False)
    assert max(batches) >= 3  # ArcFace, SphereFace, combined (and SphereFace once warm) train as one
    for a, b in zip(want, got, strict=True):
        assert a.step == b.step == 200
        assert abs(a.test_acc - b.test_acc) <= 0.02
        assert b.loss == pytest.approx(a.loss, rel=0.05)
        cos = np.clip(np.sum(a.embeddings * b.embeddings, axis=1), -1.0, 1.0)
        assert np.median(np.degrees(np.arccos(cos))) < 2.0


def test_adam_written_out_where_the_members_do_not_use_the_fused_kernel(batches):
    alone, together = build(CLASS[:3]), build(CLASS[:3])
    for t in [*alone, *together]:
        t.optimizer.fused = False
    same_runs(alone, together, [t.advance(40) for t in alone], advance_together(together, 40))
    assert batches == [3]


def test_members_at_different_steps_and_a_member_going_on_alone(batches):
    alone, together = build(CLASS[:3]), build(CLASS[:3])
    alone[0].advance(50)  # the first member started earlier (a visitor who pressed Train first)
    together[0].advance(50)
    for _ in range(3):
        want = [t.advance(20) for t in alone]
        got = advance_together(together, 20)
        same_runs(alone, together, want, got)
    assert [s.step for s in got] == [110, 60, 60] and batches == [3, 3, 3]
    assert np.array_equal(alone[1].advance(20).centres, together[1].advance(20).centres)  # state written back


def test_a_setting_changed_between_chunks_applies_to_that_member_only(batches):
    alone, together = build(CLASS[:3]), build(CLASS[:3])
    for trainers in (alone, together):
        trainers[0].set_loss_params(m2=0.35)  # its margins now differ: it trains alone
        trainers[1].set_lr(0.005)  # a learning rate of its own: still in the batch
    same_runs(alone, together, [t.advance(30) for t in alone], advance_together(together, 30))
    assert together[0].loss_fn.m2 == 0.35 and together[1].lr == 0.005 and batches == [2]


@pytest.mark.parametrize("members, steps", [
    ([SWEEP[0], SWEEP[2], SWEEP[3], dict(loss="arcface", s=10.0, m2=0.4, seed=6)], [5, 10, 5, 5]),  # arccos form
    ([SWEEP[1], SWEEP[4]], [5, 5]),  # no arccos: cos θ − m3
    ([SWEEP[5], dict(loss="combined", easy_margin=True, seed=7)], [5, 5]),  # easy margin
], ids=["arc", "plain", "easy"])
def test_a_sweeps_margin_gives_each_member_its_own_loss_and_gradient(members, steps):
    """One batch of a sweep (one margin formula; the SphereFace member is in its warm-up): each member's loss and
    gradients are those of its own loss module alone, here at the clamp's ends θ = 0 and θ = π too."""
    trainers = build(members)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(trainers), 64, 2, generator=g, requires_grad=True)
    w = torch.randn(len(trainers), 8, 2, generator=g, requires_grad=True)
    labels = torch.randint(0, 8, (len(trainers), 64), generator=g)
    emb.data[0, :4] = w.data[0, labels[0, :4]]
    emb.data[1, :4] = -w.data[1, labels[1, :4]]
    loss = margin_cross_entropy(_BatchMargin(trainers).at(trainers, steps), emb, w, labels)
    gx, gw = torch.autograd.grad(loss.sum(), (emb, w))
    for i, t in enumerate(trainers):
        t.step = steps[i]
        t._apply_schedules()
        e, ww = emb[i].detach().requires_grad_(True), w[i].detach().requires_grad_(True)
        one = margin_cross_entropy(t.loss_fn, e, ww, labels[i])
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


def test_a_sweep_grid_batches_each_shape_and_keeps_the_order(batches):
    """advance_grid (a sweep map's advance): trainers alike in shape train as one batch per shape, the others
    alone, and every snapshot comes back in the trainers' order, equal to its run alone up to rounding."""
    from arcface_viz.batched import advance_grid

    members = [{"loss": "arcface", "m2": m2, "seed": 0} for m2 in (0.1, 0.3)]
    members += [{"loss": "adacos", "seed": 0}, {"loss": "arcface", "m2": 0.2, "seed": 0, "hidden": (32,)},
                {"loss": "arcface", "m2": 0.2, "seed": 0, "hidden": (32,)}, {"loss": "arcface", "m2": 0.5, "seed": 0}]
    alone = [build_toy_trainer(m) for m in members]
    grid = [build_toy_trainer(m) for m in members]
    for _ in range(5):
        want = [t.advance(20) for t in alone]
        got = advance_grid(grid, 20)
    assert sorted(batches[:2]) == [2, 3]  # the three default-width ArcFace runs, the two wide ones; AdaCos alone
    for a, b, t in zip(want, got, grid, strict=True):
        assert a.step == b.step == t.step == 100
        assert abs(a.test_acc - b.test_acc) <= 0.02
        assert b.loss == pytest.approx(a.loss, rel=0.05)
