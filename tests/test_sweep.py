"""Sweep maps (issue 15): the grid's settings, each cell a lesson run, the numbers and the verdict, sharing, the map."""

import json
import math
import threading

import numpy as np
import pytest

from arcface_viz import sweep as S
from arcface_viz.params import TOY_SPEC, ParamError
from arcface_viz.plots.sweep import axis_position, boundary_segments, cell_hover, clicked_cell, sweep_map_figure
from arcface_viz.training import ToyConfig

SMALL = dict(dataset="fig3", loss="arcface", x="s=4,32", y="m2=0,0.8", steps=60)


@pytest.fixture(scope="module")
def small_map():
    """A 2 × 2 map trained one run after another (the reference every faster path must equal)."""
    return S.run_sweep(S.make_config(**SMALL), advance=S.one_by_one)


# ---------------------------------------------------------------------------------------------- settings


def test_axes_are_the_loss_parameters_dim_classes_and_lr():
    from arcface_viz.losses import LOSS_PARAMS, LOSSES

    for dataset, loss, extra in (("fig3", "arcface", ("dim", "classes", "lr")), ("digits", "cosface", ("dim", "lr"))):
        numbers = tuple(p for p in LOSSES[loss].params if LOSS_PARAMS[p].kind in ("float", "int"))
        assert S.axis_names(dataset, loss) == numbers + extra  # images have no class count to change
    assert S.axis_names("fig3", "arcface")[:2] == ("s", "m2") and "easy_margin" not in S.axis_names("fig3", "arcface")
    axis = S.parse_axis(" s = 2, 4 ,8", "fig3", "arcface")
    assert axis == S.Axis("s", (2.0, 4.0, 8.0)) and axis.text() == "s=2,4,8"
    assert S.parse_axis("dim=2,3", "fig3", "arcface").values == (2, 3)


@pytest.mark.parametrize("text, words", [
    ("m3=0,0.1", "cannot be an axis"),  # ArcFace has no m3
    ("classes=4,8", "no 'classes'"),  # on digits (below)
    ("s=2,200", "outside the allowed range"),
    ("s=2,2", "repeated"),
    ("s", "NAME=V1,V2"),
    ("s=", "at least one value"),
    ("dim=2,4", "not one of"),
])
def test_bad_axes_are_refused_with_a_message(text, words):
    dataset = "digits" if text.startswith("classes") else "fig3"
    with pytest.raises(ParamError, match=words):
        S.parse_axis(text, dataset, "arcface")


def test_equal_maps_get_equal_configs_whoever_writes_them():
    """The page passes every setting, the CLI only what it was given: the same map must be the same key."""
    page = S.config_from_values({**S.SWEEP_SPEC.defaults(), **S.preset_values("s_m2")})
    cli = S.make_config("fig3", "arcface", "s=2,4,8,16,32,64", "m2=0,0.2,0.4,0.6,0.8,1", 500)
    assert page == cli and hash(page) == hash(cli) and page.fixed == ()
    other = S.make_config("fig3", "arcface", "s=2,4,8,16,32,64", "m2=0,0.2,0.4,0.6,0.8,1", 500, fixed={"lr": 0.02})
    assert other != cli and other.fixed == (("lr", 0.02),)


def test_make_config_lists_every_problem():
    with pytest.raises(ParamError) as err:
        S.make_config("fig3", "arcface", "s=2,4", "s=2,4", 0, seeds=(1, 1), fixed={"lr": -1, "bogus": 2})
    text = str(err.value)
    for words in ("both 's'", "steps must be", "different seeds", "learning rate", "'bogus' cannot be set"):
        assert words in text, text


def test_hosted_limits_cap_the_map(monkeypatch):
    monkeypatch.setenv("ARCFACE_VIZ_HOSTED", "1")
    lim = S.sweep_limits()
    assert lim is S.HOSTED_LIMITS and "fashion-mnist" not in lim.datasets
    with pytest.raises(ParamError, match="at most 6 values"):
        S.make_config("fig3", "arcface", "s=1,2,3,4,5,6,7", "m2=0,0.1", 100)
    with pytest.raises(ParamError, match="from 1 to 500"):
        S.make_config("fig3", "arcface", "s=2,4", "m2=0,0.1", 600)
    with pytest.raises(ParamError, match="not offered"):
        S.make_config("fashion-mnist", "arcface", "s=2,4", "m2=0,0.1", 100)
    S.make_config("digits", "arcface", "s=2,4", "m2=0,0.1", 300)  # digits at 300 steps is fine


def test_every_preset_is_a_valid_map_and_loads_on_the_page():
    for key, p in S.PRESETS.items():
        cfg = S.preset_config(key)
        assert (cfg.x.text().split("=")[0], cfg.y.text().split("=")[0]) == (p.x.split("=")[0], p.y.split("=")[0])
        values = {**S.SWEEP_SPEC.defaults(), **S.preset_values(key), "preset": key}
        assert S.config_from_values(S.SWEEP_SPEC.validate(values)) == cfg


# ---------------------------------------------------------------------------------------------- cells


def test_every_cell_is_the_lesson_run_of_its_link(small_map):
    """A cell's numbers are those of the toy command for the same settings; its link reopens those settings."""
    from arcface_viz.commands.toy import train

    for c in small_map.cells:
        page, query = small_map.link(c.ix, c.iy)
        assert page == "pages/toy_training.py"
        values, notices = TOY_SPEC.from_query(query)
        assert not notices and values["s"] == c.x and values["m2"] == c.y
        alone, snap = train(ToyConfig.from_values(values), SMALL["steps"])
        run = c.runs[0]
        assert run["test_acc"] == alone["test_acc"] and run["final_loss"] == pytest.approx(alone["final_loss"])
        for key in ("W-EC", "Intra1", "Inter1"):
            assert run[key] == pytest.approx(alone[key], abs=1e-9), key
        assert 0.5 <= run["verification_accuracy"] <= 1.0


def test_json_has_the_documented_shape_and_no_nan(small_map):
    out = small_map.to_json()
    json.dumps(out, allow_nan=False)  # NaN never reaches the JSON
    assert set(out) == {"settings", "cells", "seconds", "num_classes"}
    assert out["settings"]["x"] == {"name": "s", "values": [4.0, 32.0]} and out["settings"]["steps"] == 60
    cell = out["cells"][0]
    for key in ("s", "m2", "test_acc", "verification_accuracy", "W-EC", "Intra1", "Inter1", "final_loss", "trained"):
        assert key in cell, key
    assert [(c["s"], c["m2"]) for c in out["cells"]] == [(4.0, 0.0), (32.0, 0.0), (4.0, 0.8), (32.0, 0.8)]
    assert cell["link"].startswith("toy_training?dataset=fig3&")


def test_margin_fit_is_the_geometry_of_each_cell(small_map):
    """8 centres on a circle are at most 45° apart; ArcFace needs more than m2 between two centres: 0.8 rad
    (45.8°) does not fit, 0 does."""
    assert [c.margin_fits for c in small_map.cells] == [True, True, False, False]
    assert small_map.fits_grid().tolist() == [[True, True], [False, False]]
    assert any("45.0° apart in 2-D" in line for line in S.summary(small_map))


def test_verdict_names_each_failure():
    assert S.verdict(2.0, math.nan, 0.9, 8, True).startswith("NaN")
    assert S.verdict(2.0, 1.0, 0.9, 8, False).startswith("NaN")
    assert "did not fall" in S.verdict(2.0, 1.95, 0.9, 8, True)
    assert "chance" in S.verdict(2.0, 0.5, 0.2, 8, True)  # 1/8 + 0.1·7/8 = 21.25 %
    assert S.verdict(2.0, 0.5, 0.25, 8, True) is None


def test_a_diverging_cell_is_flagged_and_does_not_poison_its_neighbours():
    """SGD at lr 0.5 with s = 64 and m2 = 0.8 in 2-D does not train; the cell beside it (lr 0.01) is exactly
    its run alone, and the map never shows NaN."""
    cfg = S.make_config("fig3", "arcface", "lr=0.01,0.5", "s=64", 100, fixed={"optimizer": "sgd", "m2": 0.8})
    result = S.run_sweep(cfg)
    good, bad = result.cells
    assert good.trained and not bad.trained and bad.reason
    alone = S.run_sweep(S.make_config("fig3", "arcface", "lr=0.01", "s=64", 100,
                                      fixed={"optimizer": "sgd", "m2": 0.8}), advance=S.one_by_one).cells[0]
    assert good.runs[0]["test_acc"] == alone.runs[0]["test_acc"]
    assert good.runs[0]["W-EC"] == pytest.approx(alone.runs[0]["W-EC"], abs=1.0)
    json.dumps(result.to_json(), allow_nan=False)
    hover = cell_hover(result, 1, 0)
    assert "did not train" in hover and "nan" not in hover.lower()
    fig = sweep_map_figure(result, "test_acc")
    assert any(t.name == "did not train" for t in fig.data)
    assert "nan" not in json.dumps([t.hovertext for t in fig.data if t.hovertext is not None]).lower()


def test_several_seeds_give_a_mean_and_a_spread():
    cfg = S.make_config("fig3", "arcface", "s=8", "m2=0.2", 40, seeds=(0, 1))
    result = S.run_sweep(cfg)
    c = result.cells[0]
    accs = [r["test_acc"] for r in c.runs]
    assert c.mean("test_acc") == pytest.approx(np.mean(accs)) and c.spread("test_acc") == pytest.approx(np.std(accs))
    cell = result.to_json()["cells"][0]
    assert [s["seed"] for s in cell["per_seed"]] == [0, 1] and "spread" in cell
    assert "± " in cell_hover(result, 0, 0) and "mean of 2 seeds" in cell_hover(result, 0, 0)


# ---------------------------------------------------------------------------------------------- sharing


def test_thirty_visitors_asking_for_one_map_train_it_once():
    shared = S.SharedSweeps(max_items=2)
    cfg = S.make_config("fig3", "arcface", "s=8", "m2=0.2", 30)
    results, seen = [], []
    threads = [threading.Thread(target=lambda: results.append(
        shared.run(cfg, progress=lambda f, t: seen.append(f)))) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.trainings == 1 and len(results) == 30 and all(r is results[0] for r in results)
    assert shared.get(cfg) is results[0]
    for steps in (31, 32):  # two more maps push the first one out
        shared.run(S.make_config("fig3", "arcface", "s=8", "m2=0.2", steps))
    assert shared.get(cfg) is None and shared.trainings == 3


def test_different_maps_train_one_at_a_time_and_the_next_one_waits_its_turn():
    shared = S.SharedSweeps(max_parallel=1)
    first, second = (S.make_config("fig3", "arcface", "s=8", "m2=0.2", steps) for steps in (40, 41))
    busy, overlap, told = threading.Lock(), [], []

    def advance(trainers, k, snapshot=True):
        if not busy.acquire(blocking=False):
            overlap.append(k)  # two maps training at the same moment
        else:
            busy.release()
        with busy:
            return S.one_by_one(trainers, k, snapshot)

    threads = [threading.Thread(target=shared.run, args=(cfg,),
                                kwargs=dict(advance=advance, poll=0.01, progress=lambda f, t: told.append(t)))
               for cfg in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.get(first) and shared.get(second) and not overlap
    assert any("waiting for another map" in t for t in told)


def test_a_failing_map_raises_for_everyone_waiting_and_is_not_kept():
    shared = S.SharedSweeps()
    cfg = S.make_config("fig3", "arcface", "s=8", "m2=0.2", 30)

    def broken(trainers, k, snapshot=True):
        raise ValueError("broken on purpose")

    with pytest.raises(ValueError, match="on purpose"):
        shared.run(cfg, advance=broken)
    assert shared.get(cfg) is None
    assert shared.run(cfg).cells[0].trained  # asked again, it trains


# ---------------------------------------------------------------------------------------------- the map


def test_axis_positions_follow_the_grid():
    assert axis_position([2, 4, 8, 16], 4) == 1.0
    assert axis_position([2, 4, 8, 16], 2 ** 1.5) == pytest.approx(0.5)  # a geometric axis interpolates in log
    assert axis_position([0, 0.2, 0.4], 0.3) == pytest.approx(1.5)
    assert math.isnan(axis_position([2, 4, 8], 100))
    assert axis_position([3, 4, 6], 2.8) == pytest.approx(-0.2)  # within half a cell of the end


def test_theory_line_fences_off_the_cells_that_do_not_fit():
    fits = np.array([[True, True], [True, False]])
    assert sorted(boundary_segments(fits)) == [(0.5, 0.5, 0.5, 1.5), (0.5, 0.5, 1.5, 0.5)]
    assert boundary_segments(np.ones((2, 3), dtype=bool)) == []


def test_map_figure_has_cells_theory_and_click_targets(small_map):
    fig = sweep_map_figure(small_map, "verification_accuracy")
    (heat,) = [t for t in fig.data if t.name == "values"]
    assert heat.type == "heatmap" and np.array(heat.z, dtype=float).shape == (2, 2)
    assert len(fig.layout.shapes) == 2  # the dashed line between the m2 = 0 and m2 = 0.8 rows
    cells = [t for t in fig.data if t.name == "cell"][0]
    assert [list(c) for c in cells.customdata] == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert list(fig.layout.xaxis.ticktext) == ["4", "32"] and list(fig.layout.yaxis.ticktext) == ["0", "0.8"]
    assert clicked_cell({"selection": {"points": [{"customdata": [1, 0]}]}}) == (1, 0)
    assert clicked_cell({"selection": {"points": []}}) is None


def test_adacos_rule_is_drawn_over_an_s_by_classes_map():
    assert S.adacos_scale(8) == pytest.approx(math.sqrt(2) * math.log(7))
    result = S.run_sweep(S.make_config("fig3", "norm_softmax", "classes=3,12", "s=1,4", 20))
    fig = sweep_map_figure(result)
    rule = [t for t in fig.data if t.name and t.name.startswith("AdaCos")]
    assert rule and len(rule[0].x) > 10
    # s = √2·ln(2) = 0.98 at C = 3 is the bottom row; √2·ln(11) = 3.39 at C = 12 is below s = 4 (row 1)
    assert rule[0].x[0] == pytest.approx(0.0) and rule[0].y[0] == pytest.approx(-0.014, abs=0.01)
    assert rule[0].x[-1] == pytest.approx(1.0) and 0.5 < rule[0].y[-1] < 1.0


def test_image_runs_in_worker_processes_are_the_mnist_lessons_runs():
    """Digits cells trained two processes at a time equal the runs alone in this process, and each is the MNIST
    lesson's run of its link (the same test accuracy after the same steps)."""
    from arcface_viz.image_training import MNIST_SPEC, ImageConfig

    cfg = S.make_config("digits", "arcface", "s=8,16", "m2=0.3", 20)
    parallel = S.run_sweep(cfg, workers=2)
    alone = S.run_sweep(cfg, advance=S.one_by_one)
    for a, b in zip(parallel.cells, alone.cells, strict=True):
        assert a.runs == b.runs
    page, query = parallel.link(1, 0)
    assert page == "pages/mnist.py"
    values, notices = MNIST_SPEC.from_query(query)
    assert not notices and (values["dataset"], values["s"], values["m2"]) == ("digits", 16.0, 0.3)
    trainer = ImageConfig.from_values(values).build()
    trainer.advance(20)
    assert trainer.full_test()[0] == parallel.cell(1, 0).runs[0]["test_acc"]
