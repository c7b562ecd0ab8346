"""Table 3 at small scale: the five-model run, the reading against the paper, the figures and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arcface_viz import table3 as T
from arcface_viz.params import ParamError
from arcface_viz.plots.stats import pair_angle_figure, table3_figure
from arcface_viz.stats import PAPER_TABLE3, TABLE3_ROWS

ROOT = Path(__file__).resolve().parents[1]
TINY = 40  # optimizer steps per model: enough to move every statistic, fast on busy cores


@pytest.fixture(scope="module")
def fig3_run() -> T.Table3Result:
    return T.run_table3("fig3", 0.5, seed=0, dim=8, steps=TINY)


# --- the run ---------------------------------------------------------------------------------------


def test_five_rows_in_table3_order_with_equal_steps(fig3_run):
    assert [r.column for r in fig3_run.rows] == ["NS", "ArcFace", "IntraL", "InterL", "TripletL"]
    assert [r.loss for r in fig3_run.rows] == ["norm_softmax", "arcface", "intra", "inter", "triplet"]
    assert {r.steps for r in fig3_run.rows} == {TINY}
    assert fig3_run.config["steps"] == TINY and fig3_run.config["dim"] == 8
    assert fig3_run.n_classes == 8 and fig3_run.n_train + fig3_run.n_test == 8 * 200


def test_triplet_has_no_w_statistics_and_every_other_value_is_an_angle(fig3_run):
    for row in fig3_run.rows:
        for stat in TABLE3_ROWS:
            v = row.stats[stat]
            if row.column == "TripletL" and stat in ("W-EC", "W-Inter"):
                assert v is None
            else:
                assert v is not None and math.isfinite(v) and 0.0 <= v <= 180.0, (row.column, stat, v)
    assert fig3_run.row("TripletL").test_acc is None
    assert all(0.0 <= r.test_acc <= 1.0 for r in fig3_run.rows if r.column != "TripletL")


def test_pairs_and_verification_of_the_test_set(fig3_run):
    for row in fig3_run.rows:
        pairs, ver = row.pairs, row.verification
        assert len(pairs["pos_deg"]) == pairs["n_positive"] > 0 and len(pairs["neg_deg"]) == pairs["n_negative"] > 0
        assert 0.0 <= pairs["overlap"] <= 1.0
        assert np.mean(pairs["pos_deg"]) == pytest.approx(pairs["mean_positive_deg"], abs=0.01)
        # 320 test samples of 8 classes: 6,240 positive pairs, so 3,000 + 3,000 balanced verification pairs
        assert ver["n_pairs"] == T.VERIFICATION_PAIRS
        assert 0.5 <= ver["accuracy_mean"] <= 1.0 and ver["accuracy_std"] >= 0.0
        assert set(ver["tar_at_far"]) == {"0.01", "0.001"}  # 3,000 negatives allow FAR 1e-3
        assert all(0.0 <= v <= 1.0 for v in ver["tar_at_far"].values())


def test_same_seed_same_numbers_other_seed_other_numbers(fig3_run):
    again = T.run_table3("fig3", 0.5, seed=0, dim=8, steps=TINY)
    other = T.run_table3("fig3", 0.5, seed=1, dim=8, steps=TINY)
    for a, b, c in zip(fig3_run.rows, again.rows, other.rows, strict=True):
        assert a.stats == b.stats
        assert a.verification == b.verification
        assert a.pairs["pos_deg"] == b.pairs["pos_deg"]
        assert a.stats["Intra1"] != c.stats["Intra1"]


def test_result_is_json_ready_and_round_trips(fig3_run):
    doc = json.loads(json.dumps(fig3_run.to_dict()))
    back = T.Table3Result.from_dict(doc)
    assert back.values() == fig3_run.values()
    assert back.rows[1].verification == fig3_run.rows[1].verification
    slim = fig3_run.to_dict(angles=False)
    assert "pos_deg" not in slim["rows"][0]["pairs"] and "overlap" in slim["rows"][0]["pairs"]


def test_the_five_models_start_from_the_same_network_and_w():
    setup = T.prepare("fig3", seed=3, dim=16)
    trainers = {c: setup.trainer(c) for c in T.TABLE3_LOSSES}
    ns = trainers["NS"]
    for column, tr in trainers.items():
        for (name, p), q in zip(ns.model.state_dict().items(), tr.model.state_dict().values(), strict=True):
            assert torch.equal(p, q), (column, name)
        if column != "TripletL":
            assert torch.equal(ns.loss_fn.weight, tr.loss_fn.weight), column
    assert float(trainers["TripletL"].loss_fn.weight.abs().sum()) == 0.0  # running means, not trained
    assert T.prepare("fig3", seed=4, dim=16).trainer("NS").loss_fn.weight.ne(ns.loss_fn.weight).any()


def test_digits_trains_the_small_cnn():
    result = T.run_table3("digits", 0.5, seed=0, dim=8, steps=3)
    assert result.config["model"] == "SmallCNN" and result.n_classes == 10
    assert result.row("ArcFace").stats["W-EC"] is not None and result.row("TripletL").stats["W-EC"] is None
    assert all(r.verification["n_pairs"] > 0 for r in result.rows)


# --- budget, parameters, bad settings ----------------------------------------------------------------


def test_budget_becomes_one_reproducible_step_count():
    assert T.steps_for("fig3", 3.0) == T.steps_for("fig3", 3.0)
    assert T.steps_for("fig3", 6.0) == pytest.approx(2 * T.steps_for("fig3", 3.0), abs=1)
    rate = T.REFERENCE_STEPS_PER_SECOND["toy"]
    steps = T.steps_for("fig3", 3.0)
    seconds = steps * (4 / rate["softmax"] + 1 / rate["triplet"])  # the five models on the reference machine
    assert seconds == pytest.approx(5 * 3.0, rel=0.01)
    assert T.steps_for("fashion-mnist", 3.0) < T.steps_for("digits", 3.0) < T.steps_for("fig3", 3.0)


@pytest.mark.parametrize("kwargs", [
    {"dataset": "cifar"}, {"budget_s": 0.0}, {"budget_s": float("nan")}, {"dim": 5}, {"seed": -1},
    {"steps": 0},
])
def test_bad_settings_raise_value_errors(kwargs):
    args = {"dataset": "fig3", "budget_s": 1.0, "seed": 0, "dim": 8, **kwargs}
    with pytest.raises(ValueError):
        T.run_table3(**args)


def test_loss_parameters_follow_the_dimension():
    assert T.loss_params_for("arcface", 2)["m2"] == pytest.approx(0.2)
    assert T.loss_params_for("arcface", 16) == {"s": 30.0, "m2": 0.5, "easy_margin": False}
    assert T.loss_params_for("triplet", 16) == {"margin": 0.35}
    assert T.loss_params_for("intra", 3)["s"] == pytest.approx(16.0)
    assert T.dataset_defaults("fashion-mnist")["budget"] > T.dataset_defaults("fig3")["budget"]


# --- measuring embeddings with known geometry --------------------------------------------------------


def _unit2(deg) -> np.ndarray:
    r = np.radians(np.asarray(deg, dtype=float))
    return np.stack([np.cos(r), np.sin(r)], axis=-1)


def test_evaluate_embeddings_on_separated_classes():
    """4 classes at 0/90/180/270°, 10 samples each within ±9° of W_j: positive pairs ≤ 18° apart, negative
    pairs ≥ 72°; verification and TAR are perfect.  180 positive pairs -> 180 negatives: FAR 1e-2 can be
    measured, 1e-3 cannot."""
    centres = np.arange(4) * 90.0
    offsets = np.linspace(-9, 9, 10)
    x = _unit2((centres[:, None] + offsets[None, :]).ravel()) * 5.0
    y = np.repeat(np.arange(4), 10)
    out = T.evaluate_embeddings(_unit2(centres), x, y, x, y, seed=0)
    assert out["stats"]["W-EC"] == pytest.approx(0.0, abs=1e-6)
    assert out["stats"]["W-Inter"] == pytest.approx(90.0) and out["stats"]["Inter2"] == pytest.approx(90.0)
    assert out["stats"]["Intra1"] == pytest.approx(np.mean(np.abs(offsets)))
    assert out["pairs"]["overlap"] == 0.0 and max(out["pairs"]["pos_deg"]) <= 18.0 + 1e-6
    assert min(out["pairs"]["neg_deg"]) >= 72.0 - 1e-6
    assert out["verification"]["accuracy_mean"] == 1.0 and out["verification"]["n_pairs"] == 360
    assert out["verification"]["tar_at_far"] == {"0.01": 1.0}
    assert out["test_acc"] == 1.0
    assert T.evaluate_embeddings(None, x, y, x, y)["test_acc"] is None


# --- reading the table against the paper -------------------------------------------------------------


def paper_values() -> dict[str, dict[str, float | None]]:
    return {c: {s: PAPER_TABLE3[s][c] for s in TABLE3_ROWS} for c in T.TABLE3_LOSSES}


def test_the_papers_own_numbers_match_every_comparison():
    lines = T.reading(paper_values())
    assert lines[0] == "24 of 24 comparisons go the same way as in the paper."
    assert not any(line.startswith("Does not match") for line in lines)
    assert "ArcFace has lower W-EC ↓ than NS, as in the paper (ours 14.3° vs 44.3°; paper 14.3° vs 44.3°)." in lines


def test_a_reversed_direction_is_reported_as_not_matching():
    values = paper_values()
    values["ArcFace"]["W-EC"] = 50.0  # above NS's 44.26, the paper has it below
    lines = T.reading(values)
    assert lines[0] == "23 of 24 comparisons go the same way as in the paper."
    assert lines[-1] == ("Does not match: ArcFace has higher W-EC ↓ than NS (50.0° vs 44.3°), but in the paper it is "
                         "lower (14.3° vs 44.3°).")


def test_equal_values_are_a_tie_and_missing_values_are_skipped():
    values = paper_values()
    values["InterL"]["Inter1"] = values["NS"]["Inter1"]
    values["IntraL"] = {s: None for s in TABLE3_ROWS}  # e.g. not trained
    comps = T.compare_with_paper(values)
    assert not any(c.column == "IntraL" for c in comps)
    tie = next(c for c in comps if c.column == "InterL" and c.statistic == "Inter1")
    assert tie.ours_direction == "equal" and not tie.matches
    assert "InterL and NS have the same Inter1 ↑" in tie.sentence()
    assert not any(c.column == "TripletL" and c.statistic.startswith("W") for c in comps)


def test_reading_a_hand_made_result_and_without_a_baseline():
    rows = [T.Table3Row("NS", "norm_softmax", stats={"W-EC": 40.0, "W-Inter": 60.0, "Intra1": 30.0,
                                                      "Inter1": 50.0, "Intra2": 30.0, "Inter2": 50.0}),
            T.Table3Row("ArcFace", "arcface", stats={"W-EC": 10.0, "W-Inter": 70.0, "Intra1": 20.0,
                                                      "Inter1": 60.0, "Intra2": 35.0, "Inter2": 60.0})]
    lines = T.reading(T.Table3Result(config={}, rows=rows))
    assert lines[0] == "5 of 6 comparisons go the same way as in the paper."
    assert lines[-1].startswith("Does not match: ArcFace has higher Intra2 ↓ than NS (35.0° vs 30.0°)")
    assert T.reading(T.Table3Result(config={}, rows=rows[1:])) == [
        "Nothing to compare yet: the table needs NS and at least one other loss."]


def test_tables_for_the_page(fig3_run):
    table = T.comparison_table(fig3_run)
    assert [r["statistic"] for r in table] == ["W-EC ↓", "W-Inter ↑", "Intra1 ↓", "Inter1 ↑", "Intra2 ↓", "Inter2 ↑"]
    assert table[0]["ArcFace (paper)"] == 14.29 and table[0]["TripletL"] is None
    t2 = T.table2_rows(fig3_run)
    assert len(t2) == 18
    ours = {r["loss"]: r["ours (verification %)"] for r in t2 if r["ours (verification %)"] is not None}
    assert set(ours) == set(T.TABLE2_EQUIVALENT.values())
    assert ours["ArcFace (0.5)"] == pytest.approx(100 * fig3_run.row("ArcFace").verification["accuracy_mean"])
    assert all(r["ours (verification %)"] is None for r in T.table2_rows(None))


# --- figures -----------------------------------------------------------------------------------------


def test_pair_angle_figure_overlays_two_normalised_histograms():
    fig = pair_angle_figure([10, 12, 14], [80, 90, 100, 110], "ArcFace", overlap=0.0, accuracy=0.991,
                            tar={"0.001": 0.95})
    assert [t.type for t in fig.data] == ["histogram", "histogram"]
    assert {t.histnorm for t in fig.data} == {"probability"} and fig.layout.barmode == "overlay"
    assert fig.data[0].marker.color != fig.data[1].marker.color
    assert "verification 99.1 %" in fig.layout.title.text and "TAR@FAR=0.001 95.0 %" in fig.layout.title.text
    with pytest.raises(ValueError):
        pair_angle_figure([], [1.0])


def test_table3_figure_leaves_out_the_triplet_w_rows(fig3_run):
    fig = table3_figure(fig3_run.values(), PAPER_TABLE3)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert set(bars) == set(T.TABLE3_LOSSES)
    assert np.isnan(bars["TripletL"].y[0]) and np.isfinite(bars["NS"].y[0])


# --- CLI ---------------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arcface_viz", "table3", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_json_prints_the_five_rows():
    proc = run_cli("--dataset", "fig3", "--steps", "20", "--seed", "0", "--dim", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["loss"] for r in rows] == ["norm_softmax", "arcface", "intra", "inter", "triplet"]
    for r in rows:
        assert set(TABLE3_ROWS) <= set(r) and 0.5 <= r["verification_accuracy"] <= 1.0 and r["steps"] == 20
    assert rows[4]["W-EC"] is None and rows[4]["W-Inter"] is None and rows[0]["W-EC"] is not None
    assert "Training TripletL" in proc.stderr


def test_cli_bad_dataset_exits_2_without_a_traceback():
    proc = run_cli("--dataset", "cifar", "--json")
    assert proc.returncode == 2
    assert "--dataset: unknown data set 'cifar'" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args, message", [
    (("--budget", "abc"), "--budget"),
    (("--budget", "0"), "--budget"),
    (("--dim", "5"), "--dim"),
    (("--seed", "-3"), "--seed"),
    (("--steps", "1.5"), "--steps: expected a whole number"),
])
def test_cli_bad_values_exit_2(args, message, capsys):
    from arcface_viz.cli import main

    assert main(["table3", *args, "--json"]) == 2
    out = capsys.readouterr()
    assert message in out.err and out.out == ""


def test_param_errors_are_value_errors():
    with pytest.raises(ParamError):
        T.steps_for("fig3", -1.0)
    assert issubclass(ParamError, ValueError)


def test_a_collapsed_model_is_flagged_before_the_comparisons():
    values = paper_values()
    values["TripletL"].update({"Inter1": 0.1, "Inter2": 0.3})
    lines = T.reading(values)
    assert lines[1].startswith("TripletL collapsed: all its classes point almost the same way (Inter1 0.1°, "
                               "Inter2 0.3°) (batch-hard mining")
    assert sum("collapsed" in line for line in lines) == 1
    assert T.collapse_notes(paper_values()) == []


def test_sphere_view_of_a_saved_run(tmp_path):
    from arcface_viz.table3 import sphere_view

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), [30] * 5 + [5] * 15)  # five big classes, fifteen small ones
    centres = rng.standard_normal((20, 16))
    emb = centres[labels] + 0.05 * rng.standard_normal((len(labels), 16))
    path = tmp_path / "embeddings.npz"
    np.savez(path, embeddings=emb.astype(np.float32), labels=labels, weight=centres.astype(np.float32))
    view = sphere_view(str(path), max_classes=5, max_points=100)
    assert view["embeddings"].shape == (100, 3) and view["centres"].shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(view["embeddings"], axis=1), 1.0, atol=1e-9)
    assert view["class_names"] == ["0", "1", "2", "3", "4"] and set(view["labels"]) == set(range(5))
    # points of one class stay together after the projection: each lies nearest its own centre
    nearest = np.argmax(view["embeddings"] @ view["centres"].T, axis=1)
    assert (nearest == view["labels"]).mean() > 0.9
