"""Face backbones: 112×112 in, 512-D out, the insightface layouts and their parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from arcface_viz.fullscale.backbones import BACKBONES, IBasicBlock, count_parameters, get_backbone

# exact counts of the insightface layouts (all parameters, the frozen embedding-BN scale included), and the
# published sizes they should be close to (OpenVINO's model card of insightface's r100: 65.13M)
COUNTS = {"iresnet18": 24_025_600, "iresnet34": 34_139_328, "iresnet50": 43_590_848, "iresnet100": 65_156_160,
          "mobilefacenet": 2_059_520}
PUBLISHED_M = {"iresnet50": 43.6, "iresnet100": 65.13}


@pytest.mark.parametrize("name", BACKBONES)
def test_parameter_counts(name):
    model = get_backbone(name)
    n = count_parameters(model)
    assert n == COUNTS[name]
    if name in PUBLISHED_M:
        assert abs(n / 1e6 - PUBLISHED_M[name]) / PUBLISHED_M[name] < 0.005
    if name.startswith("iresnet"):
        # only the embedding BN's scale (frozen at 1, insightface) is not trained
        assert n - count_parameters(model, trainable_only=True) == 512
        assert not model.features.weight.requires_grad and torch.all(model.features.weight == 1)


def test_iresnet_stage_layout():
    depth = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
             "iresnet100": (3, 13, 30, 3)}
    for name, layers in depth.items():
        m = get_backbone(name)
        assert tuple(len(getattr(m, f"layer{i}")) for i in range(1, 5)) == layers
        assert isinstance(m.layer1[0], IBasicBlock) and m.layer1[0].conv2.stride == (2, 2)
        assert m.fc.in_features == 512 * 7 * 7 and m.fc.out_features == 512


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_112_images_give_512_d_embeddings(name):
    torch.manual_seed(0)
    model = get_backbone(name)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        model.eval()
        assert model.body(x).shape[-2:] == (7, 7)  # four stride-2 stages: 112 -> 7
        y = model(x)
    assert y.shape == (2, 512) and y.dtype == torch.float32 and torch.isfinite(y).all()
    if name != "mobilefacenet":  # one backward pass is enough on 2 busy cores
        return
    model.train()
    out = model(x)
    out.pow(2).sum().backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_options_and_errors():
    m = get_backbone("mbf", embedding_size=128, dropout=0.2).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 112, 112)).shape == (2, 128)
    assert get_backbone("r50").layers == (3, 4, 14, 3)
    with pytest.raises(ValueError, match="unknown network"):
        get_backbone("resnet50")
    with pytest.raises(ValueError, match="112, 112"):
        get_backbone("mobilefacenet")(torch.randn(2, 3, 96, 96))
    with pytest.raises(ValueError, match="dropout"):
        get_backbone("iresnet18", dropout=1.5)


def test_bf16_body_keeps_a_float32_embedding():
    torch.manual_seed(0)
    m = get_backbone("mobilefacenet", amp_dtype=torch.bfloat16).eval()
    ref = get_backbone("mobilefacenet").eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        y, y_ref = m(x), ref(x)
    assert y.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(y, y_ref)
    assert torch.all(cos > 0.95) and not torch.equal(y, y_ref)  # bf16 really ran, and stayed close
