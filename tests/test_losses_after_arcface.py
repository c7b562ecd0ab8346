"""The losses after ArcFace (issue 14): each against an implementation written here from its formula (values,
gradients and running state over three consecutive training batches), the equivalences between them, the
sub-centre cleaning step, and finite values at every θ and every slider value in float32 and bfloat16."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from arcface_viz.losses import AFTER_ARCFACE, LOSSES, clean_subcentres, loss_defaults, make_loss
from arcface_viz.params import LOSS_SPEC

C, D, B = 7, 5, 24
PI = math.pi


def _batch(seed: int, k: int = 1, scale: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C * k, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    x = torch.randn(B, D, generator=g) * scale
    x[0] = centres[y[0] * k] * 2.0  # θ_y = 0
    x[1] = -centres[y[1] * k] * 0.7  # θ_y ≈ π: past π − m
    return x, centres, y


def _loss(name: str, centres: torch.Tensor, **params) -> torch.nn.Module:
    loss = make_loss(name, C, D, **params)
    with torch.no_grad():
        loss.centre_matrix().copy_(centres.view_as(loss.centre_matrix()))
    return loss


def _leaf(loss) -> torch.Tensor:
    return loss.subcentres if loss.info.subcentres else loss.weight


# --- the formulas, written out op by op (autograd gives the reference gradients) --------------------------


def ref_cos(x, w, k=1):
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    return cos.view(len(x), -1, k).amax(dim=2) if k > 1 else cos


def ref_arc(th, m):
    """cos(θ + m), and cos θ − m·sin m once θ + m passes π (insightface)."""
    return torch.where(th + m <= PI, torch.cos(th + m), torch.cos(th) - m * math.sin(m) if not torch.is_tensor(m)
                       else torch.cos(th) - m * torch.sin(m))


def ref_theta(c):
    return torch.acos(c.clamp(-1 + 1e-6, 1 - 1e-6))


def ref_ce(logits, y):
    return F.cross_entropy(logits, y)


def with_target(cos, y, target):
    onehot = F.one_hot(y, cos.shape[1]).bool()
    return torch.where(onehot, target[:, None], cos)


def ref_subcenter(x, w, y, state, *, s, m2, k):
    cos = ref_cos(x, w, k)
    cy = cos[torch.arange(len(y)), y]
    return ref_ce(s * with_target(cos, y, ref_arc(ref_theta(cy), m2)), y), state


def ref_adacos(x, w, y, state):
    cos = ref_cos(x, w)
    rows = torch.arange(len(y))
    cy = cos[rows, y]
    s_old = state["s"]
    with torch.no_grad():
        neg = torch.exp(s_old * cos.double())
        neg[rows, y] = 0.0
        b_avg = neg.sum() / len(y)
        th_med = torch.sort(ref_theta(cy))[0][(len(y) - 1) // 2]  # the lower median
        s_new = max(1.0, float(torch.log(b_avg)) / math.cos(min(PI / 4, float(th_med))))
    return ref_ce(s_new * cos, y), {"s": s_new}


def ref_magface(x, w, y, state, *, s, l_a, u_a, l_m, u_m, lambda_g, easy_margin):
    cos = ref_cos(x, w)
    cy = cos[torch.arange(len(y)), y]
    a = x.norm(dim=1).clamp(l_a, u_a)
    m = l_m + (u_m - l_m) * (a - l_a) / (u_a - l_a)
    th = ref_theta(cy)
    target = torch.where(cy > 0, torch.cos(th + m), cy) if easy_margin else ref_arc(th, m)
    g = a / u_a ** 2 + 1 / a
    return ref_ce(s * with_target(cos, y, target), y) + lambda_g * g.mean(), state


def ref_adaface(x, w, y, state, *, s, m2, h, t_alpha):
    cos = ref_cos(x, w)
    cy = cos[torch.arange(len(y)), y]
    a = x.norm(dim=1).clamp(0.001, 100).detach()
    mu = t_alpha * a.mean() + (1 - t_alpha) * state["batch_mean"]
    sd = t_alpha * a.std() + (1 - t_alpha) * state["batch_std"]
    z = (h * (a - mu) / (sd + 1e-3)).clamp(-1, 1)
    angle = (ref_theta(cy) - m2 * z).clamp(1e-3, PI - 1e-3)
    target = torch.cos(angle) - (m2 + m2 * z)
    return ref_ce(s * with_target(cos, y, target), y), {"batch_mean": float(mu), "batch_std": float(sd)}


def ref_curricularface(x, w, y, state, *, s, m2):
    cos = ref_cos(x, w)
    cy = cos[torch.arange(len(y)), y]
    t = 0.01 * float(cy.detach().mean()) + 0.99 * state["t"]
    th = ref_theta(cy)
    hard = cos > torch.cos(th + m2)[:, None]
    others = torch.where(hard, cos * (t + cos), cos)
    return ref_ce(s * with_target(others, y, ref_arc(th, m2)), y), {"t": t}


def ref_margins(mean, sigma, plus, cy, step):
    """N(mean, σ²) per sample from torch's generator seeded with ``step``; plus: the k-th largest margin to the
    sample with the k-th largest cos θ_y, assigned one by one."""
    torch.manual_seed(step)
    m = mean + sigma * torch.randn(len(cy), 1)[:, 0]
    if plus:
        sorted_m = sorted(m.tolist(), reverse=True)
        closest_first = sorted(range(len(cy)), key=lambda i: -float(cy[i]))
        m = torch.empty_like(m)
        for rank, i in enumerate(closest_first):
            m[i] = sorted_m[rank]
    return m


def ref_elastic_arc(x, w, y, state, *, s, m2, sigma, plus, step):
    cos = ref_cos(x, w)
    cy = cos[torch.arange(len(y)), y]
    m = ref_margins(m2, sigma, plus, cy.detach(), step)
    return ref_ce(s * with_target(cos, y, ref_arc(ref_theta(cy), m)), y), state


def ref_elastic_cos(x, w, y, state, *, s, m3, sigma, plus, step):
    cos = ref_cos(x, w)
    cy = cos[torch.arange(len(y)), y]
    m = ref_margins(m3, sigma, plus, cy.detach(), step)
    return ref_ce(s * with_target(cos, y, cy - m), y), state


CASES = [
    ("subcenter_arcface", {"s": 8.0, "m2": 0.5, "k": 3}, ref_subcenter, {}),
    ("subcenter_arcface", {"s": 16.0, "m2": 0.2, "k": 2}, ref_subcenter, {}),
    ("adacos", {}, ref_adacos, {"s": math.sqrt(2) * math.log(C - 1)}),
    ("magface", {"s": 8.0, "l_a": 1.0, "u_a": 4.0, "l_m": 0.2, "u_m": 0.6, "lambda_g": 3.0, "easy_margin": True},
     ref_magface, {}),
    ("magface", {"s": 8.0, "l_a": 1.0, "u_a": 4.0, "l_m": 0.3, "u_m": 0.8, "lambda_g": 3.0, "easy_margin": False},
     ref_magface, {}),
    ("adaface", {"s": 8.0, "m2": 0.4, "h": 0.333, "t_alpha": 0.3}, ref_adaface,
     {"batch_mean": 20.0, "batch_std": 100.0}),
    ("adaface", {"s": 8.0, "m2": 0.4, "h": 1.0, "t_alpha": 1.0}, ref_adaface,
     {"batch_mean": 20.0, "batch_std": 100.0}),
    ("curricularface", {"s": 8.0, "m2": 0.5}, ref_curricularface, {"t": 0.0}),
    ("elasticface_arc", {"s": 8.0, "m2": 0.5, "sigma": 0.1, "plus": False}, ref_elastic_arc, {}),
    ("elasticface_arc", {"s": 8.0, "m2": 0.5, "sigma": 0.1, "plus": True}, ref_elastic_arc, {}),
    ("elasticface_cos", {"s": 8.0, "m3": 0.35, "sigma": 0.1, "plus": False}, ref_elastic_cos, {}),
    ("elasticface_cos", {"s": 8.0, "m3": 0.35, "sigma": 0.1, "plus": True}, ref_elastic_cos, {}),
]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_loss_equals_its_formula_over_three_training_batches(case):
    """Training forward (the fused node) = the formula written out: loss, ∂/∂x, ∂/∂W and the running state after
    each of three consecutive batches (the state feeds the next batch)."""
    name, params, ref, state = CASES[case]
    k = params.get("k", 1)
    x0, centres, y = _batch(11, k)
    if name == "magface":  # norms on both sides of the clamp [l_a, u_a]
        x0 = x0 * torch.linspace(0.3, 3.0, B)[:, None]
    loss = _loss(name, centres, **params)
    assert loss.training
    extra = {"step": None} if name.startswith("elasticface") else {}
    for step in range(3):
        x = (x0 + 0.2 * step).requires_grad_(True)
        torch.manual_seed(step)
        value = loss(x, y)
        gx, gw = torch.autograd.grad(value, (x, _leaf(loss)))
        xr, wr = (x0 + 0.2 * step).requires_grad_(True), centres.clone().requires_grad_(True)
        if extra:
            extra["step"] = step
        want, state = ref(xr, wr, y, dict(state), **params, **extra)
        rx, rw = torch.autograd.grad(want, (xr, wr))
        assert value.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6), step
        torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gw.reshape(rw.shape), rw, rtol=1e-4, atol=1e-6)
        for key, v in state.items():
            assert getattr(loss, key).item() == pytest.approx(v, rel=1e-5), (step, key)
        if name.startswith("elasticface"):
            want_m = ref_margins(params.get("m2", params.get("m3")), params["sigma"], params["plus"],
                                 ref_cos(x.detach(), centres)[torch.arange(B), y], step)
            torch.testing.assert_close(loss.last_margins[:, 0], want_m)


def test_the_references_see_the_regions_that_matter():
    """The batches above reach past π − m, hard negatives and both ends of MagFace's clamp (else the comparison
    would not test those branches)."""
    x0, centres, y = _batch(11)
    cos = ref_cos(x0, centres)
    cy = cos[torch.arange(B), y]
    assert (ref_theta(cy) > PI - 0.5).any()
    assert (cos > torch.cos(ref_theta(cy) + 0.5)[:, None]).sum() > B
    a = (x0 * torch.linspace(0.3, 3.0, B)[:, None]).norm(dim=1)
    assert (a < 1.0).any() and (a > 4.0).any() and ((a > 1) & (a < 4)).any()


# --- equivalences -----------------------------------------------------------------------------------------


def _value_and_grads(loss, x, y):
    x = x.clone().requires_grad_(True)
    value = loss(x, y)
    gx, gw = torch.autograd.grad(value, (x, _leaf(loss)))
    return value.detach(), gx, gw.reshape(-1, D)


@pytest.mark.parametrize("other,base,params", [
    ("subcenter_arcface", "arcface", {"s": 16.0, "m2": 0.5, "k": 1}),
    ("elasticface_arc", "arcface", {"s": 16.0, "m2": 0.5, "sigma": 0.0}),
    ("elasticface_arc", "arcface", {"s": 16.0, "m2": 0.3, "sigma": 0.0, "plus": True}),
    ("elasticface_cos", "cosface", {"s": 16.0, "m3": 0.35, "sigma": 0.0}),
    ("adaface", "cosface", {"s": 16.0, "m2": 0.4, "h": 0.0}),
])
def test_equivalences(other, base, params):
    """subcenter k=1 = ArcFace; ElasticFace σ = 0 = ArcFace/CosFace; AdaFace h = 0 = CosFace with m3 = m2."""
    x, centres, y = _batch(3)
    base_params = {k: v for k, v in params.items() if k in LOSSES[base].params}
    if other == "adaface":
        base_params["m3"] = params["m2"]
    a, b = _loss(other, centres, **params), _loss(base, centres, **base_params)
    for got, want in zip(_value_and_grads(a, x, y), _value_and_grads(b, x, y), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_curricularface_mask_uses_the_formula_without_the_fallback():
    """Past π − m the target is cos θ − m·sin m, but the official mask compares with cos(θ_y + m): a negative at
    cos −0.9945 is not hard for a sample at θ_y = 160° (cos(160° + 0.5 rad) = −0.989), though it beats the
    fallback target −1.18."""
    loss = make_loss("curricularface", 2, 2, s=1.0, m2=0.5).eval()
    loss.t.fill_(0.5)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [math.cos(math.radians(-26)), math.sin(math.radians(-26))]]))
    x = torch.tensor([[math.cos(math.radians(160)), math.sin(math.radians(160))]])
    logits = loss.logits(x, torch.tensor([0]))[0]
    assert logits[1].item() == pytest.approx(math.cos(math.radians(174)), abs=1e-5)  # unchanged: not hard
    assert logits[0].item() == pytest.approx(math.cos(math.radians(160)) - 0.5 * math.sin(0.5), abs=1e-5)


def test_state_moves_only_in_training_and_is_saved():
    x, centres, y = _batch(4)
    for name, keys in (("adacos", ("s",)), ("adaface", ("batch_mean", "batch_std")), ("curricularface", ("t",))):
        loss = _loss(name, centres).eval()
        before = {k: getattr(loss, k).item() for k in keys}
        loss(x, y)
        loss.logits(x, y)
        assert {k: getattr(loss, k).item() for k in keys} == before
        loss.train()
        loss(x, y)
        after = {k: getattr(loss, k).item() for k in keys}
        assert all(after[k] != before[k] for k in keys), name
        loss.logits(x, y)  # reads the state, never moves it
        assert {k: getattr(loss, k).item() for k in keys} == after
        other = _loss(name, centres)
        other.load_state_dict(loss.state_dict())
        assert {k: getattr(other, k).item() for k in keys} == after


def test_adacos_scale_starts_from_the_class_count_and_a_given_s():
    assert make_loss("adacos", 10_575, 8).s.item() == pytest.approx(math.sqrt(2) * math.log(10_574))
    assert make_loss("adacos", 10, 8, s=5.0).s.item() == 5.0  # a state given as a parameter: its start
    loss = make_loss("adacos", 2, 2)  # √2·ln 1 = 0: the update keeps s ≥ 1 so that something trains
    loss(torch.randn(8, 2), torch.randint(0, 2, (8,)))
    assert loss.s.item() >= 1.0


def test_elasticface_plus_margins_are_monotone_in_cos_where_the_official_indexing_is_not():
    """Ours: the larger the cos θ_y, the larger the margin.  The official code's ``margin[argsort(cos, desc)]``
    (margins sorted ascending) applies the permutation, not its inverse: on this batch it is not monotone."""
    torch.manual_seed(0)
    cos_y = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.3])
    margins = 0.5 + 0.05 * torch.randn(5)
    official = torch.sort(margins)[0][torch.sort(cos_y, descending=True)[1]]
    order = torch.argsort(cos_y)
    assert not bool((torch.diff(official[order]) >= 0).all())
    loss = make_loss("elasticface_arc", 3, 2, sigma=0.05, plus=True)
    x = torch.stack([torch.tensor([c, math.sqrt(1 - c * c)]) for c in cos_y.tolist()])
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    torch.manual_seed(3)
    loss(x, torch.zeros(5, dtype=torch.long))
    ours = loss.last_margins[:, 0]
    assert bool((torch.diff(ours[order]) >= 0).all())
    torch.manual_seed(3)
    assert sorted(ours.tolist()) == pytest.approx(sorted((0.5 + 0.05 * torch.randn(5)).tolist()))  # same draws


def test_elasticface_seed_fixes_the_margins_and_sigma_spreads_them():
    x, centres, y = _batch(5)
    loss = _loss("elasticface_arc", centres, sigma=0.05)
    torch.manual_seed(1)
    loss(x, y)
    first = loss.last_margins.clone()
    torch.manual_seed(1)
    loss(x, y)
    torch.testing.assert_close(loss.last_margins, first)
    assert first.std().item() == pytest.approx(0.05, rel=0.5) and first.mean().item() == pytest.approx(0.5, abs=0.05)


# --- sub-centres and the cleaning step --------------------------------------------------------------------


def test_subcentre_cleaning_keeps_dominant_centres_and_drops_far_samples():
    loss = make_loss("subcenter_arcface", 2, 2, k=3)
    deg = [0.0, 120.0, 240.0, 90.0, 200.0, 300.0]  # class 0's sub-centres, then class 1's
    with torch.no_grad():
        loss.subcentres.copy_(torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))]
                                            for d in deg]).view(2, 3, 2))
    angles = [5.0, -10.0, 3.0, 125.0, 85.0, 95.0, 80.0, 205.0]  # 3 near class 0's sub-centre 0, one at its 1 …
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    x = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles])
    out = clean_subcentres(loss, x, labels)
    assert out.dominant.tolist() == [0, 0]
    assert out.nearest.tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    assert out.at_dominant.tolist() == [True, True, True, False, True, True, True, False]
    np.testing.assert_allclose(out.angle_deg.numpy(), [5, 10, 3, 125, 5, 5, 10, 115], atol=1e-3)
    assert out.keep.tolist() == [True, True, True, False, True, True, True, False]
    np.testing.assert_allclose(out.centres.numpy(), [[1, 0], [0, 1]], atol=1e-6)
    with pytest.raises(ValueError, match="sub-centres"):
        clean_subcentres(make_loss("arcface", 2, 2), x, labels)


def test_subcentres_shape_and_weight_is_the_dominant_one():
    loss = make_loss("subcenter_arcface", 4, 3)
    assert tuple(loss.subcentres.shape) == (4, 3, 3) and tuple(loss.weight.shape) == (4, 3)
    x, y = torch.randn(64, 3), torch.randint(0, 4, (64,))
    loss(x, y)
    assert loss.subcentre_hits.sum().item() == 64
    nearest = (F.normalize(loss.subcentres.detach(), dim=-1)[y] @ x.unsqueeze(-1)).squeeze(-1).argmax(dim=-1)
    want = torch.zeros(4, 3).index_put_((y, nearest), torch.ones(64), accumulate=True)
    torch.testing.assert_close(loss.subcentre_hits, want)  # the fused node's nearest sub-centres, counted
    dom = loss.subcentre_hits.argmax(dim=1)
    torch.testing.assert_close(loss.weight, loss.subcentres[torch.arange(4), dom])


# --- numerics: θ = 0 and π, every slider value, a = 0, float32 and bfloat16 -------------------------------

R = {p.name: (p.min, p.max) for p in LOSS_SPEC if p.kind in ("float", "int") and p.min is not None}


def _finite(name, params, theta, norm, dtype):
    own = {k: v for k, v in params.items() if k in LOSSES[name].params}
    try:
        loss = make_loss(name, 3, 2, **own)
    except ValueError:  # e.g. MagFace's u_a ≤ l_a: refused when built, but a live trainer may be given it
        loss = make_loss(name, 3, 2)
        for k, v in own.items():
            setattr(loss, k, v)
    with torch.no_grad():
        loss.centre_matrix().copy_(F.normalize(torch.randn_like(loss.centre_matrix()), dim=1))
        if loss.info.subcentres:
            loss.subcentres[0, :] = torch.tensor([1.0, 0.0])
        else:
            loss.weight[0] = torch.tensor([1.0, 0.0])
    loss = loss.to(dtype)
    x = torch.tensor([[norm * math.cos(theta), norm * math.sin(theta)], [0.3, -2.0], [norm, 0.0]], dtype=dtype,
                     requires_grad=True)
    y = torch.tensor([0, 1, 0])
    value = loss(x, y)
    grads = torch.autograd.grad(value, [x, *loss.parameters()], allow_unused=True)
    state_ok = all(torch.isfinite(b.float()).all() for b in loss.buffers())
    return torch.isfinite(value.float()).item() and state_ok and all(
        g is None or torch.isfinite(g.float()).all().item() for g in grads)


def _extremes():
    lo = {k: v[0] for k, v in R.items()}
    hi = {k: v[1] for k, v in R.items()}
    return [lo, hi, {**lo, "u_a": R["u_a"][1]}, {**hi, "l_a": R["l_a"][1], "u_a": R["u_a"][0]},
            {**hi, "plus": True, "easy_margin": False}, {**lo, "plus": True, "easy_margin": True}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("params", _extremes())
@pytest.mark.parametrize("name", AFTER_ARCFACE)
def test_edge_values_finite(name, params, dtype):
    for theta in (0.0, PI, PI / 2):
        for norm in (0.0, 1.0, 150.0):
            assert _finite(name, params, theta, norm, dtype), (name, theta, norm)


@settings(max_examples=120, deadline=None)
@given(name=st.sampled_from(AFTER_ARCFACE), theta=st.one_of(st.just(0.0), st.just(PI), st.floats(0, PI)),
       norm=st.one_of(st.just(0.0), st.floats(0, 200)), dtype=st.sampled_from([torch.float32, torch.bfloat16]),
       values=st.fixed_dictionaries({k: (st.integers(int(lo), int(hi)) if LOSS_SPEC[k].kind == "int"
                                         else st.floats(lo, hi)) for k, (lo, hi) in R.items()}),
       flags=st.tuples(st.booleans(), st.booleans()))
def test_property_no_nan_or_inf(name, theta, norm, dtype, values, flags):
    assert _finite(name, {**values, "plus": flags[0], "easy_margin": flags[1]}, theta, norm, dtype)


@pytest.mark.parametrize("name", AFTER_ARCFACE)
def test_defaults_and_presets(name):
    make_loss(name, 3, 2, **loss_defaults(name, low_dim=True))
    info = LOSSES[name]
    assert loss_defaults(name, low_dim=True).get("s", 16.0) <= 32
    assert info.presets and all(set(p) <= set(info.params) for p in info.presets.values())


@pytest.mark.parametrize("name", [n for n in AFTER_ARCFACE if not LOSSES[n].subcentres])
def test_batched_models_with_their_own_parameters(name):
    """G models as one (G, B, C) step with per-model parameters (G, 1, 1): fused = autograd, and each model's
    loss and state equal a single model's (ElasticFace draws G·B margins at once, so it is compared fused
    against autograd only)."""
    from arcface_viz.losses import make_margin, margin_cross_entropy

    g, b, c, d = 3, 16, 5, 4
    params = {k: (torch.tensor([v, 0.9 * v, 1.1 * v]).view(g, 1, 1) if isinstance(v, float) else v)
              for k, v in loss_defaults(name, low_dim=True).items()}
    margin = make_margin(name, num_classes=c, batch_shape=(g,), **params).train()
    gen = torch.Generator().manual_seed(2)
    emb, w, y = torch.randn(g, b, d, generator=gen), torch.randn(c, d, generator=gen), torch.randint(0, c, (g, b))
    start = {k: v.clone() for k, v in margin.state_dict().items()}
    runs = []
    for fused in (True, False):
        margin.load_state_dict(start)
        e, wc = emb.clone().requires_grad_(True), w.clone().requires_grad_(True)
        torch.manual_seed(0)
        value = margin_cross_entropy(margin, e, wc, y, fused=fused)
        value.sum().backward()
        runs.append((value.detach(), e.grad, wc.grad, *(v.clone() for v in margin.state_dict().values())))
    for a, bb in zip(*runs, strict=True):
        torch.testing.assert_close(a, bb, rtol=1e-4, atol=1e-6)
    if name.startswith("elasticface"):
        return
    for i in range(g):
        one = make_margin(name, num_classes=c, **{k: (float(v.flatten()[i]) if torch.is_tensor(v) else v)
                                                   for k, v in params.items()}).train()
        assert margin_cross_entropy(one, emb[i], w, y[i]).item() == pytest.approx(runs[0][0][i].item(), rel=1e-5)
        for key, v in one.state_dict().items():
            assert v.item() == pytest.approx(runs[0][3 + list(one.state_dict()).index(key)].flatten()[i].item(),
                                             rel=1e-5)


def test_parameters_that_cannot_work_are_refused_with_a_message():
    for name, params, words in (("magface", {"l_a": 0.0}, "l_a must be > 0"),
                                ("magface", {"l_a": 20.0, "u_a": 10.0}, "u_a must be above l_a"),
                                ("adaface", {"t_alpha": 1.5}, "t_alpha"), ("adaface", {"h": -1.0}, "h must be"),
                                ("elasticface_cos", {"sigma": -0.1}, "sigma"),
                                ("subcenter_arcface", {"k": 0}, "must be ≥ 1")):
        with pytest.raises(ValueError, match=words):
            make_loss(name, 3, 2, **params)


# --- gradient detachment (detach_margin, the margin runner's modifier) on the new losses -------------------

DETACHED = [n for n in AFTER_ARCFACE if "detach_margin" in LOSSES[n].params]


def test_every_new_loss_with_a_margin_can_detach_it():
    assert set(DETACHED) == set(AFTER_ARCFACE) - {"adacos"}  # AdaCos has no margin to detach
    assert "interclass_filtering_threshold" in LOSSES["adacos"].params


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", DETACHED)
def test_detached_margin_same_value_gradient_of_s_cos_theta(name, fused):
    """detach_margin: the loss value is unchanged, and the gradient is that of s·cos θ_j under the margined
    softmax (plus MagFace's g(a) term, whose gradient stays): with p the softmax of the margined logits,
    ∂L/∂cos θ_j = s·(p_j − [j = y])/B, written out here with autograd through the normalisations only."""
    from arcface_viz.losses import margin_cross_entropy

    params = {**loss_defaults(name, low_dim=True), "s": 8.0}
    k = params.get("k", 1)
    x, centres, y = _batch(21, k)
    if name == "magface":
        x = x * torch.linspace(0.3, 3.0, B)[:, None]
    plain, detached = (_loss(name, centres, **params, detach_margin=d).eval() for d in (False, True))
    runs = []
    for loss in (plain, detached):
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(3)
        value = margin_cross_entropy(loss, xi, loss.centre_matrix(), y, fused=fused)
        runs.append((value, *torch.autograd.grad(value, (xi, _leaf(loss)))))
    assert runs[1][0].item() == pytest.approx(runs[0][0].item(), rel=1e-6)
    changed = (runs[1][1] - runs[0][1]).abs().max().item()
    assert changed > 1e-4 if name != "elasticface_cos" else changed < 1e-6  # cos θ − m has slope 1 already
    xr, wr = x.clone().requires_grad_(True), centres.clone().requires_grad_(True)
    cos = ref_cos(xr, wr, k)
    with torch.no_grad():
        torch.manual_seed(3)
        z = detached.logits(x, y)  # the margined logits, values only (the same draws of random margins)
        coeff = params["s"] * (torch.softmax(z, dim=1) - F.one_hot(y, C)) / B
    surrogate = (coeff * cos).sum()
    if name == "magface":
        a = xr.norm(dim=1).clamp(params["l_a"], params["u_a"])
        surrogate = surrogate + params["lambda_g"] * (a / params["u_a"] ** 2 + 1 / a).mean()
    rx, rw = torch.autograd.grad(surrogate, (xr, wr))
    torch.testing.assert_close(runs[1][1], rx, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(runs[1][2].reshape(rw.shape), rw, rtol=1e-4, atol=1e-6)
