"""Face backbones for full-scale training: IResNet-18/34/50/100 and MobileFaceNet, 112×112 in, 512-D out.

The layouts follow insightface's ``arcface_torch`` so that published numbers and checkpoints line up:

- **IResNet** (ArcFace paper §3.2, "improved residual unit"): a 3×3 stem at stride 1 (64 channels, BN,
  PReLU), four stages of 64/128/256/512 channels, each halving the resolution (112 → 56 → 28 → 14 → 7),
  built from BN-Conv-BN-PReLU-Conv-BN blocks whose second convolution carries the stride; then the output
  block "E": BN - Dropout - FC(512·7·7 → 512) - BN (the last BN's scale frozen at 1).
- **MobileFaceNet** (Chen et al. 2018, insightface's ``mbf`` with width ×2): a stride-2 stem, depthwise
  "bottleneck" blocks (1×1 expand - 3×3 depthwise - 1×1 linear projection, residual when shapes match),
  a 1×1 conv to 512 channels and the global depthwise conv (GDC: 7×7 depthwise, BN, FC, BN) head.

``amp_dtype`` (float16 when ``fp16=True``, or bfloat16) runs the convolutional body under autocast while the
FC head stays float32, as insightface does: the 25,088-wide FC is where half precision loses most.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = 112
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
BACKBONES: tuple[str, ...] = (*IRESNET_LAYERS, "mobilefacenet")
#: insightface's short names, accepted by :func:`get_backbone`
ALIASES: dict[str, str] = {"r18": "iresnet18", "r34": "iresnet34", "r50": "iresnet50", "r100": "iresnet100",
                           "mbf": "mobilefacenet"}


def _check_input(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"{name} expects images of shape (batch, 3, {INPUT_SIZE}, {INPUT_SIZE}), "
                         f"got {tuple(x.shape)}")


class _AmpBody(nn.Module):
    """Shared forward: the body under autocast (if ``amp_dtype``), the embedding head in float32."""

    amp_dtype: torch.dtype | None = None

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, type(self).__name__)
        if self.amp_dtype is None:
            x = self.body(x)
        else:
            with torch.autocast(x.device.type, dtype=self.amp_dtype):
                x = self.body(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.head(x.float())


# ------------------------------------------------------------------------------------------------ IResNet


class IBasicBlock(nn.Module):
    """Improved residual unit: BN - Conv3×3 - BN - PReLU - Conv3×3(stride) - BN, plus the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:  # 1×1 projection shortcut
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(_AmpBody):
    """IResNet with ``layers`` blocks per stage and the BN-Dropout-FC-BN embedding head."""

    def __init__(self, layers: tuple[int, int, int, int], embedding_size: int = 512, dropout: float = 0.0,
                 amp_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.amp_dtype = amp_dtype
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        stages, width = [], 64
        for blocks, ch in zip(layers, (64, 128, 256, 512), strict=True):
            stage = [IBasicBlock(width, ch, stride=2)] + [IBasicBlock(ch, ch) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            width = ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        side = INPUT_SIZE // 16  # four stride-2 stages: 112 -> 7
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)  # the embedding BN only shifts, it never rescales
        self.layers, self.embedding_size = tuple(layers), embedding_size

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


# ------------------------------------------------------------------------------------------ MobileFaceNet


def _conv_bn(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
                               nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class DepthWise(nn.Module):
    """1×1 expand to ``hidden`` - 3×3 depthwise (stride) - 1×1 linear projection; residual if ``residual``."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            _conv_bn(in_ch, hidden),
            _conv_bn(hidden, hidden, 3, stride, 1, groups=hidden),
            _conv_bn(hidden, out_ch, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class MobileFaceNet(_AmpBody):
    """insightface's ``mbf``: blocks (1, 4, 6, 2) at width ×2, GDC head to ``embedding_size``."""

    def __init__(self, embedding_size: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 2,
                 dropout: float = 0.0, amp_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.amp_dtype = amp_dtype
        c1, c2 = 64 * scale, 128 * scale

        def residual(ch: int, n: int, hidden: int) -> list[nn.Module]:
            return [DepthWise(ch, ch, hidden, residual=True) for _ in range(n)]

        layers: list[nn.Module] = [_conv_bn(3, c1, 3, 2, 1)]  # 112 -> 56
        if blocks[0] == 1:
            layers.append(_conv_bn(c1, c1, 3, 1, 1, groups=64))
        else:
            layers += residual(c1, blocks[0], 128)
        layers += [DepthWise(c1, c1, 128, stride=2), *residual(c1, blocks[1], 128),   # 56 -> 28
                   DepthWise(c1, c2, 256, stride=2), *residual(c2, blocks[2], 256),   # 28 -> 14
                   DepthWise(c2, c2, 512, stride=2), *residual(c2, blocks[3], 256)]   # 14 -> 7
        self.layers = nn.Sequential(*layers)
        self.conv_sep = _conv_bn(c2, 512)
        side = INPUT_SIZE // 16
        self.gdc = _conv_bn(512, 512, side, groups=512, act=False)  # global depthwise conv: 7×7 -> 1×1
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.blocks, self.scale, self.embedding_size = tuple(blocks), scale, embedding_size

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gdc(self.conv_sep(x))
        return self.features(self.fc(self.dropout(torch.flatten(x, 1))))


# ---------------------------------------------------------------------------------------------- factory


def get_backbone(name: str, embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False,
                 amp_dtype: torch.dtype | None = None) -> nn.Module:
    """Build a backbone by name (``iresnet18/34/50/100``, ``mobilefacenet`` or insightface's r18…r100, mbf).

    ``fp16=True`` runs the body under float16 autocast (``amp_dtype`` picks another dtype, e.g. bfloat16).
    """
    key = ALIASES.get(name, name)
    if key not in BACKBONES:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(BACKBONES)} "
                         f"(or {', '.join(ALIASES)})")
    if isinstance(embedding_size, bool) or int(embedding_size) != embedding_size or embedding_size < 1:
        raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    dtype = amp_dtype if amp_dtype is not None else (torch.float16 if fp16 else None)
    if key == "mobilefacenet":
        return MobileFaceNet(int(embedding_size), dropout=dropout, amp_dtype=dtype)
    return IResNet(IRESNET_LAYERS[key], int(embedding_size), dropout, amp_dtype=dtype)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
