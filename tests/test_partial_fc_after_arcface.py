"""Partial FC on 2 real gloo ranks equals the single-process loss for every loss after ArcFace (issue 14): loss
value, gradients of the embeddings and of each rank's shard of centres (sub-centres included), and the running
state after two consecutive steps (AdaCos's s, AdaFace's μ and σ, CurricularFace's t), with no change to
partial_fc.py."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arcface_viz.fullscale.partial_fc import PartialFC
from arcface_viz.losses import AFTER_ARCFACE, make_loss

N_CLASSES, DIM, B, WORLD, STEPS = 11, 16, 6, 2, 2
CASES = [
    ("subcenter_arcface", {}),
    ("subcenter_arcface", {"k": 2, "m2": 0.3, "s": 16.0}),
    ("adacos", {}),
    ("magface", {}),
    ("magface", {"easy_margin": False, "l_a": 2.0, "u_a": 14.0}),
    ("adaface", {"t_alpha": 0.5}),
    ("curricularface", {}),
    ("elasticface_arc", {"sigma": 0.1}),
    ("elasticface_arc", {"sigma": 0.1, "plus": True}),
    ("elasticface_cos", {"sigma": 0.1, "plus": True}),
    ("magface", {"detach_margin": True}),  # the margin modifiers too
    ("curricularface", {"detach_margin": True, "interclass_filtering_threshold": 0.3}),
    ("adacos", {"interclass_filtering_threshold": 0.3}),
]
STATE = {"adacos": ("s",), "adaface": ("batch_mean", "batch_std"), "curricularface": ("t",)}


def _data(k: int, step: int):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(N_CLASSES * k, DIM, generator=g)
    labels = torch.tensor([0, 0, 3, 7, 10, 5, 5, 7, 1, 9, 9, 2])  # classes on both shards (0..5 | 6..10)
    emb = torch.randn(WORLD * B, DIM, generator=g) * 3 + step
    emb[1] = -weight[labels[1] * k] * 2  # θ_y ≈ 180°
    emb[8] = weight[labels[8] * k] * 0.5  # θ_y ≈ 0°, a small norm
    return weight, labels, emb


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sl = slice(rank * B, (rank + 1) * B)
        out = []
        for i, (name, params) in enumerate(CASES):
            pfc = PartialFC(name, N_CLASSES, DIM, **params)
            k = pfc.margin_loss.centres
            steps = []
            for step in range(STEPS):
                weight, labels, emb = _data(k, step)
                with torch.no_grad():
                    pfc.weight.copy_(weight[pfc.class_start * k:pfc.class_end * k])
                x = emb[sl].clone().requires_grad_(True)
                pfc.weight.grad = None
                torch.manual_seed(100 * i + step)  # the same draws on every rank
                loss = pfc(x, labels[sl])
                loss.backward()
                state = {key: getattr(pfc.margin_loss, key).item() for key in STATE.get(name, ())}
                margins = getattr(pfc.margin_loss, "last_margins", None)
                steps.append((loss.item(), x.grad.clone(), pfc.weight.grad.clone(), pfc.class_start * k, state,
                              None if margins is None else margins.clone()))
            out.append(steps)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(WORLD, os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        yield [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


def test_every_loss_after_arcface_is_covered():
    assert {name for name, _ in CASES} == set(AFTER_ARCFACE)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}{p or ''}" for n, p in CASES])
def test_two_ranks_match_single_process(two_ranks, case):
    name, params = CASES[case]
    ref = make_loss(name, N_CLASSES, DIM, **params)
    k = ref.centres
    moved = False
    for step in range(STEPS):
        weight, labels, emb = _data(k, step)
        with torch.no_grad():
            ref.centre_matrix().copy_(weight.view_as(ref.centre_matrix()))
        leaf = ref.subcentres if k > 1 else ref.weight
        leaf.grad = None
        x = emb.clone().requires_grad_(True)
        torch.manual_seed(100 * case + step)
        loss = ref(x, labels)
        loss.backward()
        w_grad = leaf.grad.reshape(N_CLASSES * k, DIM)
        for rank, res in enumerate(two_ranks):
            value, x_grad, shard_grad, start, state, margins = res[case][step]
            assert value == pytest.approx(loss.item(), rel=1e-5, abs=1e-6), (rank, step)
            torch.testing.assert_close(x_grad, x.grad[rank * B:(rank + 1) * B], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(shard_grad, w_grad[start:start + shard_grad.shape[0]], rtol=1e-4, atol=1e-6)
            for key, v in state.items():  # the state saw every rank's batch, the same on every rank
                assert v == pytest.approx(getattr(ref, key).item(), rel=1e-5), (rank, step, key)
                moved |= step == STEPS - 1 and v != make_loss(name, N_CLASSES, DIM, **params).state_dict()[key]
            if margins is not None:
                torch.testing.assert_close(margins, ref.last_margins)
        assert sum(res[case][step][2].shape[0] for res in two_ranks) == N_CLASSES * k
    assert moved or name not in STATE
