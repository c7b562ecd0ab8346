"""Suite-wide pytest hooks: the ``cuda`` marker.

Tests marked ``@pytest.mark.cuda`` need a CUDA GPU.  Without one they are *deselected* (not skipped), and the
run ends with a line saying how many and why; ``pytest -m cuda`` on a GPU machine runs exactly them
(``python bench/gpu_check.py`` does).  ``ARCFACE_VIZ_CUDA_TESTS_ON_CPU=1`` runs them on the CPU instead, so
that their code is exercised where no GPU is lent (``bench/gpu_check.py --dry-run`` sets it).
"""

from __future__ import annotations

import os

import pytest
import torch

CPU_ENV = "ARCFACE_VIZ_CUDA_TESTS_ON_CPU"
_DESELECTED = pytest.StashKey[int]()


def _cuda_tests_on_cpu() -> bool:
    return os.environ.get(CPU_ENV, "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available() or _cuda_tests_on_cpu():
        return
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if cuda:
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if item.get_closest_marker("cuda") is None]
    config.stash[_DESELECTED] = len(cuda)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    n = config.stash.get(_DESELECTED, 0)
    if n:
        terminalreporter.write_line(
            f"cuda: {n} test(s) deselected: no CUDA device here (torch.cuda.is_available() is False); they run "
            f"on a GPU machine with `pytest -m cuda` or `python bench/gpu_check.py` ({CPU_ENV}=1: on the CPU)",
            yellow=True)


@pytest.fixture
def cuda_device() -> torch.device:
    """The device a ``cuda``-marked test runs on: the GPU, or the CPU under ARCFACE_VIZ_CUDA_TESTS_ON_CPU=1."""
    return torch.device("cpu" if _cuda_tests_on_cpu() and not torch.cuda.is_available() else "cuda")
