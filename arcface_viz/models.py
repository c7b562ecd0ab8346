"""Small embedding networks for the lessons: a toy MLP (2-D/3-D embeddings) and a small CNN for MNIST.

Both end in the *embedding* (no classifier): the class centres W_j live in the loss (see losses.py).
The CNN ends in the paper's output block "E" (BN-Dropout-FC-BN, ArcFace §3.2 / Table 7 of the TPAMI
version): BatchNorm on the last feature map, dropout, one fully connected layer, BatchNorm on the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ToyMLP(nn.Module):
    """x ↦ embedding in R^embedding_dim: Linear-ReLU blocks of widths ``hidden``, then a linear layer."""

    def __init__(self, input_dim: int, embedding_dim: int = 2, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, embedding_dim))
        self.net = nn.Sequential(*layers)
        self.input_dim, self.embedding_dim, self.hidden = input_dim, embedding_dim, tuple(hidden)
        self._linears = [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same as self.net(x), minus the per-module call overhead that dominates at this size
        *hidden, last = self._linears
        for layer in hidden:
            x = F.relu(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, last.weight, last.bias)


class SmallCNN(nn.Module):
    """Conv(3×3)-BN-PReLU-MaxPool blocks, then the BN-Dropout-FC-BN embedding head (paper's option E).

    ``image_size`` 28 (MNIST) uses two pooling stages (28 → 14 → 7); 8 (sklearn digits) uses one (8 → 4):
    pooling stops before the map gets smaller than 4 pixels.
    """

    def __init__(self, embedding_dim: int = 2, in_channels: int = 1, image_size: int = 28,
                 channels: Sequence[int] = (16, 32), dropout: float = 0.2) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        size, width = image_size, in_channels
        for c in channels:
            blocks += [nn.Conv2d(width, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c)]
            if size // 2 >= 4:
                blocks.append(nn.MaxPool2d(2))
                size //= 2
            width = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(width * size * size, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self.embedding_dim, self.in_channels, self.image_size = embedding_dim, in_channels, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # (B, H, W) → (B, 1, H, W)
            x = x.unsqueeze(1)
        elif x.dim() == 2:  # flattened images
            x = x.view(-1, self.in_channels, self.image_size, self.image_size)
        return self.head(self.features(x))
