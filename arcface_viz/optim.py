"""Adam and SGD for the live lessons, without ``torch.optim``.

``torch.optim`` imports ``torch._dynamo`` (with sympy: some 800 modules and about 70 MB of memory) the first
time an optimizer is used.  A hosted app has less than 700 MB for everything, so the trainers use these two:

- :class:`Adam`: ``torch.optim.Adam`` with its defaults (β = (0.9, 0.999), ε = 1e-8, no weight decay).  It
  calls aten's fused Adam kernel, the one ``torch.optim.Adam(fused=True)`` calls, where the device has it,
  and the same update written out with tensor ops elsewhere:
  m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,  p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε).
- :class:`SGD`: ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4)`` as in the paper:
  d = g + λ·p,  b ← μ·b + d (b = d at the first step),  p ← p − lr·b.

The tests check both against ``torch.optim`` step by step.  They offer what the trainers use:
``param_groups[i]["lr"]``, ``zero_grad()`` and ``step()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class _Optimizer:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float) -> None:
        self.params = list(params)
        if lr < 0:
            raise ValueError(f"learning rate must be ≥ 0, got {lr}")
        self.param_groups = [{"params": self.params, "lr": float(lr)}]

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _with_grad(self) -> list[torch.nn.Parameter]:
        return [p for p in self.params if p.grad is not None]


class Adam(_Optimizer):
    """``torch.optim.Adam`` (defaults) for the trainers; see the module docstring."""

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, fused: bool | None = None) -> None:
        super().__init__(params, lr)
        self.state: dict[torch.nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.fused = fused

    def _state(self, p: torch.nn.Parameter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if p not in self.state:
            zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
            self.state[p] = (zeros(), zeros(), torch.zeros((), dtype=torch.float32, device=p.device))
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        if not params:
            return
        grads = [p.grad for p in params]
        m, v, t = (list(x) for x in zip(*(self._state(p) for p in params), strict=True))
        torch._foreach_add_(t, 1)
        if self.fused is not False:
            try:
                torch._fused_adam_(params, grads, m, v, [], t, lr=self.lr, beta1=self.betas[0],
                                   beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False,
                                   maximize=False)
                return
            except (RuntimeError, NotImplementedError, AttributeError):
                self.fused = False  # no fused kernel for this device or dtype: the written-out update
        b1, b2 = self.betas
        for p, g, m_, v_, step in zip(params, grads, m, v, t, strict=True):
            n = float(step)
            m_.lerp_(g, 1 - b1)
            v_.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v_.sqrt() / math.sqrt(1 - b2 ** n)).add_(self.eps)
            p.addcdiv_(m_, denom, value=-self.lr / (1 - b1 ** n))


class SGD(_Optimizer):
    """``torch.optim.SGD`` with momentum and weight decay (dampening 0, not Nesterov); see the module docstring."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4) -> None:
        super().__init__(params, lr)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.state: dict[torch.nn.Parameter, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        for p in self._with_grad():
            d = p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            if self.momentum:
                buf = self.state.get(p)
                if buf is None:
                    buf = self.state[p] = d.clone()
                else:
                    buf.mul_(self.momentum).add_(d)
                d = buf
            p.add_(d, alpha=-self.lr)
