"""bench/gpu_check.py stays runnable while no GPU is lent: its dry run, every section on the CPU; the cuda marker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["environment", "roofline", "throughput", "torchrun", "lessons", "tests"]


def _run(*args: str, cuda_tests_on_cpu: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ARCFACE_VIZ_CUDA_TESTS_ON_CPU"}
    env["PYTHONPATH"] = str(REPO)
    if cuda_tests_on_cpu:
        env["ARCFACE_VIZ_CUDA_TESTS_ON_CPU"] = "1"
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu.json"
    proc = _run("bench/gpu_check.py", "--dry-run", "--json-out", str(out))
    return proc, json.loads(out.read_text()) if out.is_file() else None


def test_dry_run_runs_every_section_and_every_check_holds(dry_run):
    proc, report = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report is not None and report["dry_run"] and report["ok"]
    assert list(report["sections"]) == SECTIONS
    for name, sec in report["sections"].items():
        assert sec["status"] == "ok", (name, sec.get("error"), [r for r in sec["rows"] if r["status"] != "ok"])
        assert sec["rows"], name
    # the one table: a header, then every section's rows
    assert proc.stdout.splitlines()[0].split()[:3] == ["section", "item", "value"]
    for name in SECTIONS:
        assert f"\n{name} " in proc.stdout
    assert "dry run (CPU): 6 section(s)" in proc.stdout


def test_dry_run_numbers(dry_run):
    _, report = dry_run
    sec = report["sections"]
    assert report["roofline_tflops"]["bf16"] > 0 and report["roofline_tflops"]["fp16"] > 0
    results = sec["throughput"]["results"]
    assert {(r["amp"], r["sample_rate"]) for r in results} == {("fp16", 0.2), ("bf16", 1.0)}
    for r in results:
        assert r["samples_per_s"] > 0 and r["flops_per_sample"] > 1e9  # MobileFaceNet: a few GFLOPs
        assert 0 < r["roofline_fraction"] and r["loss"] == r["loss"]  # a number, not NaN
    run = sec["torchrun"]
    assert run["first"]["returncode"] == 0 and run["resume"]["returncode"] == 0
    assert run["train_losses"][-1] < run["train_losses"][0] and [v["step"] for v in run["val"]] == [5, 10]
    tests = sec["tests"]
    assert tests["files"] == ["tests/test_cuda.py"] and tests["passed"] == tests["tests"] > 100
    assert tests["failures"] == tests["errors"] == tests["skipped"] == 0
    assert sec["lessons"]["toy fig3 arcface cpu"]["steps_per_s"] > 0


def test_head_flops_count_the_sampled_centres():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert gpu_check.head_train_flops(100_000, 0.2) == 6 * 512 * 20_000
    assert gpu_check.head_train_flops(10, 1.0, d=4) == 240


def test_usage_errors_exit_2():
    bad = _run("bench/gpu_check.py", "--dry-run", "--only", "roofline,warp_drive")
    assert bad.returncode == 2 and "unknown section(s) warp_drive" in bad.stderr
    if not torch.cuda.is_available():
        no_gpu = _run("bench/gpu_check.py")
        assert no_gpu.returncode == 2 and "no CUDA device here; use --dry-run" in no_gpu.stderr


def test_cuda_tests_are_deselected_and_counted_without_a_gpu():
    proc = _run("-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider")
    listed = _run("-m", "pytest", "tests/test_cuda.py", "--collect-only", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                  cuda_tests_on_cpu=True)
    collected = len([ln for ln in listed.stdout.splitlines() if "::" in ln])
    assert collected > 100
    if torch.cuda.is_available():
        assert "deselected" not in proc.stdout
    else:
        assert proc.returncode == 5  # nothing ran, and pytest says so: not a silent pass
        assert f"{collected} deselected" in proc.stdout
        assert f"cuda: {collected} test(s) deselected: no CUDA device here" in proc.stdout
