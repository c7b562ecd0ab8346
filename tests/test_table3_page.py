"""AppTest of the Table 3 page: train the five models with a tiny budget, read the table, the histograms, Table 2,
and the statistics of a training run's embeddings file."""

from __future__ import annotations

import numpy as np
from app_helpers import button, charts, open_page

PAGE = "pages/table3.py"
TINY = {"dataset": "fig3", "budget": "0.5", "dim": "2", "seed": "0"}  # 168 steps per model


def _texts(at) -> list[str]:
    return [m.value for m in at.markdown]


def test_train_fills_the_table_reading_and_histograms():
    at = open_page(PAGE, TINY)
    assert [i.value for i in at.info] == ["Press **Train the five models** to fill this side."]
    assert len(at.dataframe) == 2  # the paper's Table 3 and Table 2, nothing of ours yet
    assert not charts(at)

    button(at, "Train the five models").click().run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 3, [d.value.shape for d in at.dataframe]
    ours, paper, table2 = (d.value for d in at.dataframe)
    assert list(ours.columns) == ["NS", "ArcFace", "IntraL", "InterL", "TripletL"]
    assert list(ours.index) == ["W-EC ↓", "W-Inter ↑", "Intra1 ↓", "Inter1 ↑", "Intra2 ↓", "Inter2 ↑"]
    assert ours.loc["W-EC ↓", "TripletL"] == "–" and float(ours.loc["Intra2 ↓", "ArcFace"]) >= 0.0
    assert paper.loc["W-EC ↓", "ArcFace"] == "14.3"
    filled = table2["ours (verification %)"].replace("", None).dropna()  # blank beside rows we do not train
    assert len(filled) == 5 and 50.0 <= float(filled["ArcFace (0.5)"]) <= 100.0

    texts = _texts(at)
    assert any(t.startswith("**") and "comparisons go the same way as in the paper" in t for t in texts)
    assert sum(t.startswith("Verification: **") for t in texts) == 5
    figs = charts(at)
    histograms = [f for f in figs if f["data"] and f["data"][0]["type"] == "histogram"]
    assert len(histograms) == 5
    titles = [f["layout"]["title"]["text"].split("<br>")[0] for f in histograms]
    assert sorted(titles) == sorted(["NS", "ArcFace", "IntraL", "InterL", "TripletL"])  # a grid, column by column
    assert any(f["data"][0]["type"] == "bar" for f in figs)

    # leaving the page and coming back shows the same table without pressing Train (cached per configuration)
    at.switch_page("pages/home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 3 and at.dataframe[0].value.equals(ours)
    assert not at.info


def test_a_bad_embeddings_path_gives_a_message_and_a_good_file_its_statistics(tmp_path):
    at = open_page(PAGE, TINY)
    at.session_state["stats_embeddings_path"] = str(tmp_path / "missing.npz")
    at.run()
    assert not at.exception, at.exception
    assert any("From a training run" in h.value for h in at.subheader)
    assert [w.value for w in at.warning] == [f"Cannot read these embeddings: no such file: {tmp_path / 'missing.npz'}"]

    bad = tmp_path / "bad.npz"
    bad.write_text("not an archive")
    at.session_state["stats_embeddings_path"] = str(bad)
    at.run()
    assert not at.exception and "is not a readable .npz file" in at.warning[0].value

    # W at 0/90/180/270°, samples at W ± 10°: W-EC 0, W-Inter 90, Intra1 10, Inter1 90
    c = np.arange(4) * 90.0
    deg = np.radians(np.concatenate([c + 10, c - 10, c + 10, c - 10]))
    x = np.stack([np.cos(deg), np.sin(deg)], axis=1)
    good = tmp_path / "emb.npz"
    np.savez(good, embeddings=x, labels=np.tile(np.arange(4), 4), weight=np.stack([np.cos(np.radians(c)),
                                                                                   np.sin(np.radians(c))], 1))
    at.session_state["stats_embeddings_path"] = str(good)
    at.run()
    assert not at.exception and not at.warning
    stats = at.dataframe[-1].value
    assert stats.loc["W-EC ↓", "this run"] == "0.0" and stats.loc["W-Inter ↑", "this run"] == "90.0"
    assert stats.loc["Intra1 ↓", "this run"] == "10.0" and stats.loc["Intra2 ↓", "this run"] == "–"
    assert any(f["data"][0]["type"] == "histogram" for f in charts(at))
