"""Evidence: the paper's Table 3 (angle statistics) and Fig. 6/7 (pair angles), reproduced at small scale."""

import os
from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from arcface_viz import table3 as T
from arcface_viz.hosted import limits
from arcface_viz.losses import LOSSES
from arcface_viz.params import Spec
from arcface_viz.plots.sphere import embedding_figure
from arcface_viz.plots.stats import pair_angle_figure, table3_figure
from arcface_viz.stats import PAPER_TABLE3, TABLE3_ARROW, TABLE3_ROWS
from pages._ui import chart, controls, page_state, sync_url
from toy_data import available_datasets

PAGE = "table3"
TRAIN_KEY = f"{PAGE}:train_request"
DONE_KEY = f"{PAGE}:trained"
DATA_DIR_KEY = "mnist:data_dir"  # the MNIST page's data directory, if the visitor typed one there

st.title("Table 3: angle statistics")
st.caption("The paper's quantitative argument: five models that differ only in the loss, measured by the angles "
           "between class weights W_j, embedding-feature centres and samples; then the angles of test pairs "
           "(Fig. 6/7) and how well they verify.")
values = page_state(PAGE, T.TABLE3_SPEC)

data_dir = (st.session_state.get(DATA_DIR_KEY) or "").strip() or None
statuses = available_datasets(data_dir)
available = tuple(n for n in T.DATASET_CHOICES if n in T.TOY_CHOICES or statuses[n].available)
if values["dataset"] not in available:
    st.warning(f"**{T.DATASET_LABELS[values['dataset']]}** is not on this machine (get it on the *Live training: "
               "MNIST* page), so this page uses the Fig. 3 toy.", icon=":material/database:")
    values["dataset"] = st.session_state[f"{PAGE}:dataset"] = "fig3"
here = Spec(tuple(replace(p, choices=available) if p.name == "dataset" else p for p in T.TABLE3_SPEC))

with st.sidebar:
    st.header("Table 3")
    controls(PAGE, here, defaults_for={"dataset": T.dataset_defaults})
sync_url(T.TABLE3_SPEC, values)

steps = T.steps_for(values["dataset"], values["budget"])
cap = limits().max_steps
capped = steps > cap
if capped:
    steps = cap
extra = tuple(values["extra"])
config = (values["dataset"], float(values["budget"]), int(values["seed"]), int(values["dim"]), steps, data_dir, extra)


@st.cache_data(max_entries=16, show_spinner=False)
def train_five(dataset: str, budget: float, seed: int, dim: int, steps: int, folder: str | None,
               extra: tuple[str, ...] = ()) -> T.Table3Result:
    """The five models (and the extra columns) for one configuration, trained once and kept for every visitor
    (same seed, same table)."""
    bar = st.progress(0.0, text="Preparing the data…")
    try:
        return T.run_table3(dataset, budget, seed, dim, steps=steps, data_dir=folder, extra=extra,
                            max_train=limits().max_train_images,
                            progress=lambda f, text: bar.progress(min(1.0, max(0.0, f)), text=text))
    finally:
        bar.empty()


def request_training() -> None:
    st.session_state[TRAIN_KEY] = config


st.markdown(
    "**NS** (Norm-Softmax), **ArcFace**, **IntraL** (NS + Intra-loss), **InterL** (NS + Inter-loss) and **TripletL** "
    "train on the same data with the same seed, initial weights, mini-batches and number of steps; only the loss "
    "differs. Arrows say which direction is better: ↓ small W-EC (each class weight $W_j$ lines up with its "
    "class's feature centre) and Intra (compact classes); ↑ large W-Inter and Inter (centres spread apart). "
    "Index 1 is the training set, 2 the test set."
    + (f" Extra columns, trained alike: {', '.join(f'**{LOSSES[n].label}**' for n in extra)} (the paper has no "
       "values for them)." if extra else "")
)
c1, c2 = st.columns([1, 3])
c1.button(f"Train the {5 + len(extra)} models" if extra else "Train the five models", type="primary",
          icon=":material/play_arrow:", on_click=request_training, key=f"{PAGE}:train")
c2.caption(f"{steps:,} optimizer steps per model{' (capped on the shared app)' if capped else ''}: about "
           f"{(5 + len(extra)) * values['budget']:.0f} s in all on two CPU cores; a fixed step count, so the same "
           "numbers every time. Results are "
           "kept: coming back to this configuration shows them at once.")

trained: set = st.session_state.setdefault(DONE_KEY, set())
result = None
if st.session_state.get(TRAIN_KEY) == config or config in trained:
    try:
        result = train_five(*config)
    except ValueError as exc:  # a data set that vanished or cannot be read
        st.error(f"Could not train: {exc}", icon=":material/error:")
    else:
        trained.add(config)
    st.session_state.pop(TRAIN_KEY, None)


def fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def stat_frame(values_by_column: dict, columns=tuple(T.TABLE3_LOSSES)) -> pd.DataFrame:
    """Rows W-EC ↓ … Inter2 ↑, one column per loss, degrees as text ("–" where a loss has no value)."""
    rows = {f"{s} {TABLE3_ARROW[s]}": {c: fmt(values_by_column.get(c, {}).get(s)) for c in columns}
            for s in TABLE3_ROWS}
    return pd.DataFrame.from_dict(rows, orient="index")


paper_by_column = {c: {s: PAPER_TABLE3[s][c] for s in TABLE3_ROWS} for c in T.TABLE3_LOSSES}
st.subheader("The table")
left, right = st.columns(2)
with left:
    if result is None:
        st.info("Press **Train the five models** to fill this side.", icon=":material/table_chart:")
    else:
        cfg = result.config
        st.markdown(f"**This run** — {T.DATASET_LABELS[cfg['dataset']]}, {cfg['dim']}-D embeddings, seed "
                    f"{cfg['seed']}, {cfg['steps']:,} steps per model (degrees)")
        st.dataframe(stat_frame(result.values(), [r.column for r in result.rows]), width="stretch",
                     key=f"{PAGE}:ours")
with right:
    st.markdown("**The paper** — CASIA, ResNet50, 512-D; 2 = LFW (degrees)")
    st.dataframe(stat_frame(paper_by_column), width="stretch", key=f"{PAGE}:paper")

if result is not None:
    chart(table3_figure(result.values(), PAPER_TABLE3, arrows=TABLE3_ARROW,
                        title="Ours (bars) and the paper (◇)"), key=f"{PAGE}:bars", file_name="table3")
    st.subheader("Reading")
    lines = T.reading(result)
    st.markdown(f"**{lines[0]}**")
    for note in T.collapse_notes(result.values()):
        st.warning(note, icon=":material/warning:")
    st.markdown("\n".join(f"- {'✗ ' if line.startswith('Does not match') else '✓ '}{line}" for line in lines[1:]
                          if " collapsed: " not in line))
    st.caption(
        f"Differences by design: {result.n_classes} classes instead of 10,575 identities, {result.config['dim']}-D "
        "embeddings instead of 512-D, a small network trained for seconds, and a test set made of held-out "
        "samples of the training classes (the paper's LFW has other people). In 2-D, 8 classes can be at most 45° "
        "apart, which caps Inter and W-Inter; pick 8 or 16 dimensions for angles comparable with the paper's "
        "(16 for the 10 digits to have room for mutually orthogonal classes)."
    )

    st.subheader("Pair angles on the test set (Fig. 6/7)")
    st.markdown("Angles between two test embeddings of the same class (positive pairs) and of different classes "
                "(negative pairs). The gap between the two histograms is the margin a verification threshold "
                "can use; the overlap is what no threshold can separate.")
    cols = st.columns(3)
    for i, row in enumerate(result.rows):
        ver, pairs = row.verification, row.pairs
        with cols[i % 3]:
            chart(pair_angle_figure(pairs["pos_deg"], pairs["neg_deg"], title=row.column, overlap=pairs["overlap"]),
                  key=f"{PAGE}:pairs:{row.column}", file_name=f"pair_angles_{row.column}")
            if ver:
                tars = " · ".join(f"TAR@FAR={k}: **{100 * v:.1f} %**" for k, v in ver["tar_at_far"].items())
                st.markdown(f"Verification: **{100 * ver['accuracy_mean']:.2f} ± {100 * ver['accuracy_std']:.2f} %** "
                            f"on {ver['n_pairs']:,} pairs" + (f"  \n{tars}" if tars else ""))
            else:
                st.caption("Too few test pairs for the 10-fold protocol.")
    st.caption("Verification follows LFW's protocol: balanced same/different pairs, 10 folds, the threshold chosen "
               "on 9 and tested on the 10th. TAR@FAR uses cos θ as the score and is shown where the test set has "
               "at least 1/FAR negative pairs.")

st.subheader("The paper's Table 2, with our small-scale equivalents")
st.markdown("Verification accuracy (%) of ResNet50s trained on CASIA. Beside the five losses trained here, the "
            "verification accuracy of our models on balanced test pairs. The levels are not comparable (toy data is "
            "easy; faces are not); the order of the rows is the thing to compare.")
OURS = "ours (verification %)"
t2 = pd.DataFrame([{**r, OURS: "" if r[OURS] is None else f"{r[OURS]:.2f}"} for r in T.table2_rows(result)])
t2 = t2.set_index("loss")
st.dataframe(t2, width="stretch", height=35 * (len(t2) + 1) + 3, key=f"{PAGE}:table2", column_config={
    c: st.column_config.NumberColumn(format="%.2f") for c in ("LFW", "CFP-FP", "AgeDB-30")})



@st.cache_data(max_entries=4, show_spinner="Computing the statistics…")
def file_report(p: str, mtime: float) -> dict:
    """Statistics of a saved embeddings file, recomputed when the file changes (its mtime)."""
    return T.embeddings_file_report(p)


path = st.session_state.get("stats_embeddings_path")
if path:
    st.subheader("From a training run")
    st.caption(f"`{path}`")
    try:
        report = file_report(path, os.path.getmtime(path) if os.path.exists(path) else 0.0)
    except (ValueError, OSError) as exc:
        st.warning(f"Cannot read these embeddings: {exc}", icon=":material/warning:")
    else:
        st.markdown(f"{report['n_train']:,} training embeddings of {report['n_classes_train']:,} classes, "
                    f"{report['dim']}-D" + (f", {report['n_test']:,} test embeddings" if report["n_test"] else "")
                    + ("" if report["has_weight"] else ", no W (W-EC and W-Inter need it)") + ".")
        a = report["angle_statistics"]
        run_col, fig_col = st.columns([1, 2])
        run_col.dataframe(pd.DataFrame({"this run": [fmt(a[s]) for s in TABLE3_ROWS]},
                                       index=[f"{s} {TABLE3_ARROW[s]}" for s in TABLE3_ROWS]),
                          width="stretch", key=f"{PAGE}:file-stats")
        ver = report.get("verification") or {}
        with fig_col:
            if report["pos_deg"] and report["neg_deg"]:
                chart(pair_angle_figure(report["pos_deg"], report["neg_deg"],
                                        title=f"Pair angles ({report['pairs']['set']} set)",
                                        overlap=report["pairs"].get("overlap"), accuracy=ver.get("accuracy_mean"),
                                        tar={f"{ver['far']:g}": ver["tar_at_far"]} if "tar_at_far" in ver else None),
                      key=f"{PAGE}:file-pairs", file_name="pair_angles_run")
            else:
                st.caption("No class has two embeddings, so there are no positive pairs to draw.")
        try:
            view = T.sphere_view(path)
        except (ValueError, OSError) as exc:
            st.caption(f"No hypersphere view: {exc}")
        else:
            centres = view["centres"] if view["centres"] is not None else np.zeros((0, 3))
            chart(embedding_figure(view["embeddings"], view["labels"], centres, class_names=view["class_names"],
                                   title=f"This run on the sphere (PCA to 3-D, {len(view['class_names'])} largest "
                                         "classes)"), key=f"{PAGE}:file-sphere", file_name="run_sphere")
        if "accuracy_mean" in ver:
            st.markdown(f"Verification: **{100 * ver['accuracy_mean']:.2f} ± {100 * ver['accuracy_std']:.2f} %** on "
                        f"{ver['n_pairs']:,} pairs · TAR@FAR={ver['far']:g}: **{100 * ver['tar_at_far']:.1f} %**")
