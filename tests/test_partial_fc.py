"""Partial FC: sharded class centres on 2 real gloo ranks give the single-process loss and gradients, for the
registry's losses and for a test-only loss (tests/margin_probe.py) that uses every extension point of the
margin API: running state reduced across ranks, undetached feature norms, an extra loss term, per-sample
random margins, changed negatives, gradient detachment, inter-class filtering and sub-centres."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from margin_probe import probe_registered
from torch import nn

from arcface_viz.fullscale.partial_fc import PartialFC, allreduce_sum_hook, shard_range, supports
from arcface_viz.losses import make_loss

N_CLASSES, DIM, B, WORLD = 11, 16, 6, 2
CASES = [
    ("arcface", {}),
    ("arcface", {"easy_margin": True}),
    ("cosface", {}),
    ("sphereface", {}),
    ("combined", {"m1": 0.9, "m2": 0.4, "m3": 0.15}),
    ("norm_softmax", {"s": 30.0}),
    ("arcface+intra", {}),
    ("norm_softmax+intra+inter", {}),
    ("arcface+triplet", {}),
    # the general modifiers: the margin without gradient, and arcface_torch's inter-class filtering, which sees
    # no target column on a rank that does not hold the row's class
    ("arcface", {"detach_margin": True}),
    ("cosface", {"interclass_filtering_threshold": 0.2}),
    ("combined", {"m1": 0.9, "m2": 0.4, "m3": 0.15, "detach_margin": True, "interclass_filtering_threshold": 0.2}),
    ("arcface+intra", {"detach_margin": True, "interclass_filtering_threshold": 0.1}),
]
PROBE_CASES = [
    ("probe", {}),
    ("probe", {"probe_sigma": 0.1, "detach_margin": True}),
    ("probe_sub", {"probe_sigma": 0.1}),
]


def _probe_weight(k: int) -> torch.Tensor:
    return torch.randn(N_CLASSES * k, DIM, generator=torch.Generator().manual_seed(5))


def _data():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(N_CLASSES, DIM, generator=g)
    # classes on both shards (rank 0 holds 0..5, rank 1 holds 6..10), repeats for the triplet term
    labels = torch.tensor([0, 0, 3, 7, 10, 5, 5, 7, 1, 9, 9, 2])
    emb = torch.randn(WORLD * B, DIM, generator=g) * 3
    emb[1] = -weight[labels[1]] * 2   # θ_y ≈ 180°: the monotonic extension past (π − m2)/m1
    emb[8] = weight[labels[8]] * 0.5  # θ_y ≈ 0°
    images = torch.randn(WORLD * B, 8, generator=g)
    return weight, labels, emb, images


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        weight, labels, emb, images = _data()
        sl = slice(rank * B, (rank + 1) * B)
        out: dict = {"cases": []}
        for name, params in CASES:
            pfc = PartialFC(name, N_CLASSES, DIM, **params)
            with torch.no_grad():
                pfc.weight.copy_(weight[pfc.class_start:pfc.class_end])
            x = emb[sl].clone().requires_grad_(True)
            loss = pfc(x, labels[sl])
            loss.backward()
            out["cases"].append((loss.item(), x.grad.clone(), pfc.weight.grad.clone(), pfc.class_start))
        out["gathered"] = pfc.gather_weight(dst=0)
        out["probe"] = _probe_cases(emb[sl], labels[sl])

        # a DDP step: the backbone gradient, summed by the comm hook, equals the single-process one
        torch.manual_seed(0)
        backbone = nn.Linear(8, DIM)
        ddp = nn.parallel.DistributedDataParallel(backbone)
        ddp.register_comm_hook(None, allreduce_sum_hook)
        pfc = PartialFC("arcface", N_CLASSES, DIM)
        with torch.no_grad():
            pfc.weight.copy_(weight[pfc.class_start:pfc.class_end])
        pfc(ddp(images[sl]), labels[sl]).backward()
        out["ddp_grad"] = backbone.weight.grad.clone()

        # negative sampling: every positive centre of the gathered batch is kept
        many = 40
        pfc = PartialFC("arcface", many, DIM, sample_rate=0.3, seed=1)
        big_labels = torch.tensor([0, 4, 4, 13, 19, 25, 33, 39, 2, 21, 30, 38])
        pfc(emb[sl].clone().requires_grad_(True), big_labels[sl]).backward()
        out["sampled"] = (pfc.last_index.clone(), pfc.weight.grad.clone(), pfc.class_start, pfc.num_sample)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _probe_cases(emb: torch.Tensor, labels: torch.Tensor) -> list:
    """Each rank's loss, gradients and state t for the probe cases (random margins seeded alike everywhere)."""
    out = []
    with probe_registered():
        for i, (name, params) in enumerate(PROBE_CASES):
            pfc = PartialFC(name, N_CLASSES, DIM, **params)
            k = pfc.margin_loss.centres
            with torch.no_grad():
                pfc.weight.copy_(_probe_weight(k)[pfc.class_start * k:pfc.class_end * k])
            x = emb.clone().requires_grad_(True)
            torch.manual_seed(100 + i)
            loss = pfc(x, labels)
            loss.backward()
            out.append((loss.item(), x.grad.clone(), pfc.weight.grad.clone(), pfc.class_start * k,
                        pfc.margin_loss.t.item()))
    return out


@pytest.fixture(scope="module")
def two_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(WORLD, os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        yield [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}{p or ''}" for n, p in CASES])
def test_two_ranks_match_single_process(two_ranks, case):
    name, params = CASES[case]
    weight, labels, emb, _ = _data()
    ref = make_loss(name, N_CLASSES, DIM, **params)
    with torch.no_grad():
        ref.weight.copy_(weight)
    x = emb.clone().requires_grad_(True)
    loss = ref(x, labels)
    loss.backward()
    for rank, res in enumerate(two_ranks):
        value, x_grad, w_grad, start = res["cases"][case]
        assert value == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
        torch.testing.assert_close(x_grad, x.grad[rank * B:(rank + 1) * B], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(w_grad, ref.weight.grad[start:start + w_grad.shape[0]], rtol=1e-4, atol=1e-6)
    assert sum(res["cases"][case][2].shape[0] for res in two_ranks) == N_CLASSES


@pytest.mark.parametrize("case", range(len(PROBE_CASES)), ids=[f"{n}{p or ''}" for n, p in PROBE_CASES])
def test_probe_loss_on_two_ranks_matches_single_process(two_ranks, case):
    """A loss registered through the public API runs on 2 ranks with no change to partial_fc.py."""
    name, params = PROBE_CASES[case]
    _, labels, emb, _ = _data()
    with probe_registered():
        ref = make_loss(name, N_CLASSES, DIM, **params)
        k = ref.centres
        with torch.no_grad():
            ref.centre_matrix().copy_(_probe_weight(k).view_as(ref.centre_matrix()))
        x = emb.clone().requires_grad_(True)
        torch.manual_seed(100 + case)
        loss = ref(x, labels)
        loss.backward()
        w_grad_ref = (ref.weight if k == 1 else ref.subcentres).grad.reshape(N_CLASSES * k, DIM)
    assert ref.t.item() != 0.0
    for rank, res in enumerate(two_ranks):
        value, x_grad, w_grad, start, t = res["probe"][case]
        assert value == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)
        assert t == pytest.approx(ref.t.item(), rel=1e-6)  # the state saw the batch of every rank
        torch.testing.assert_close(x_grad, x.grad[rank * B:(rank + 1) * B], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(w_grad, w_grad_ref[start:start + w_grad.shape[0]], rtol=1e-4, atol=1e-6)
    assert sum(res["probe"][case][2].shape[0] for res in two_ranks) == N_CLASSES * k


def test_sampling_with_subcentres_keeps_every_subcentre_of_a_sampled_class():
    with probe_registered():
        pfc = PartialFC("probe_sub", 40, DIM, sample_rate=0.25, seed=2)
        assert tuple(pfc.weight.shape) == (80, DIM)
        pfc(torch.randn(3, DIM), torch.tensor([3, 3, 17])).backward()
    index = pfc.last_index.tolist()
    assert len(index) == 10 and {3, 17} <= set(index)
    touched = torch.nonzero(pfc.weight.grad.abs().sum(dim=1)).squeeze(1)
    assert set((touched // 2).tolist()) == set(index)  # each sampled class learns through a sub-centre, no other


def test_gather_weight_and_ddp_gradient(two_ranks):
    weight, labels, _, images = _data()
    torch.testing.assert_close(two_ranks[0]["gathered"], weight)
    assert two_ranks[1]["gathered"] is None
    torch.manual_seed(0)
    backbone = nn.Linear(8, DIM)
    ref = make_loss("arcface", N_CLASSES, DIM)
    with torch.no_grad():
        ref.weight.copy_(weight)
    ref(backbone(images), labels).backward()
    for res in two_ranks:
        torch.testing.assert_close(res["ddp_grad"], backbone.weight.grad, rtol=1e-4, atol=1e-6)


def test_sampling_keeps_every_positive_on_two_ranks(two_ranks):
    big_labels = torch.tensor([0, 4, 4, 13, 19, 25, 33, 39, 2, 21, 30, 38])
    for res in two_ranks:
        index, w_grad, start, num_sample = res["sampled"]
        local = {int(c) - start for c in big_labels if 0 <= int(c) - start < w_grad.shape[0]}
        assert local <= set(index.tolist())
        assert len(index) == num_sample == int(0.3 * 20)
        touched = set(torch.nonzero(w_grad.abs().sum(dim=1)).squeeze(1).tolist())
        assert touched == set(index.tolist())  # sampled centres learn, the rest get no gradient


def test_sampling_single_process():
    torch.manual_seed(0)
    pfc = PartialFC("cosface", 100, DIM, sample_rate=0.1, seed=3)
    labels = torch.tensor([5, 5, 17, 42, 99])
    x = torch.randn(5, DIM, requires_grad=True)
    pfc(x, labels).backward()
    index = pfc.last_index.tolist()
    assert len(index) == 10 and {5, 17, 42, 99} <= set(index) and index == sorted(index)
    # more positives than the sample size: exactly the positives
    labels = torch.arange(0, 60, 4)
    pfc.weight.grad = None
    pfc(torch.randn(15, DIM), labels).backward()
    assert pfc.last_index.tolist() == labels.tolist()
    # a different step draws different negatives, the sampler state is saved in the state_dict
    state = pfc.state_dict()
    pfc(torch.randn(2, DIM), torch.tensor([1, 2]))
    first = pfc.last_index.tolist()
    pfc(torch.randn(2, DIM), torch.tensor([1, 2]))
    assert pfc.last_index.tolist() != first
    pfc.load_state_dict(state)
    pfc(torch.randn(2, DIM), torch.tensor([1, 2]))
    assert pfc.last_index.tolist() == first
    # evaluation mode uses every centre
    pfc.eval()
    pfc(torch.randn(2, DIM), torch.tensor([1, 2]))
    assert pfc.last_index is None


def test_single_process_equals_margin_loss():
    torch.manual_seed(1)
    weight, labels, emb, _ = _data()
    pfc = PartialFC("combined", N_CLASSES, DIM)
    ref = make_loss("combined", N_CLASSES, DIM)
    with torch.no_grad():
        pfc.weight.copy_(weight)
        ref.weight.copy_(weight)
    pfc.margin_scale = ref.margin_scale = 0.5
    torch.testing.assert_close(pfc(emb, labels), ref(emb, labels))


def test_non_cosine_heads_are_refused():
    for name in ("softmax", "a_softmax", "triplet"):
        assert not supports(name)
        with pytest.raises(ValueError, match="cosine-head family"):
            PartialFC(name, 10, DIM)
    assert supports("arcface+inter")
    with pytest.raises(ValueError, match="sample_rate"):
        PartialFC("arcface", 10, DIM, sample_rate=0.0)
    with pytest.raises(ValueError, match="unknown loss parameter"):
        PartialFC("arcface", 10, DIM, margin_m=0.5)


def test_shard_ranges_cover_all_classes():
    for n, w in [(11, 2), (10, 3), (85742, 8), (3, 3)]:
        ranges = [shard_range(n, w, r) for r in range(w)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
        sizes = [e - s for s, e in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_resharding_is_refused():
    pfc = PartialFC("arcface", 10, DIM)
    state = pfc.state_dict()
    other = PartialFC("arcface", 12, DIM)
    with pytest.raises((ValueError, RuntimeError), match="same number of processes|size mismatch"):
        other.load_state_dict(state)
