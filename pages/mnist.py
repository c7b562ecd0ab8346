"""Lesson: train a small CNN live on MNIST-style images and watch the embeddings settle on the circle or sphere."""

from dataclasses import replace

import streamlit as st

from arcface_viz.claims import state_readout
from arcface_viz.hosted import capped
from arcface_viz.image_training import (
    DATASET_LABELS,
    IMAGE_DATASETS,
    MNIST_SPEC,
    ImageConfig,
    confused_examples,
    confusion,
    hover_texts,
    pick_available,
)
from arcface_viz.live import LiveSession
from arcface_viz.losses import LOSSES
from arcface_viz.params import LIVE_KEYS, Spec
from arcface_viz.plots.images import (
    attach_sample_ids,
    confusion_figure,
    curves_with_epochs,
    selected_samples,
    sphere_map_figure,
    thumbnails,
)
from arcface_viz.plots.sphere import embedding_figure, theta_histogram_spec
from arcface_viz.plots.style import wire
from arcface_viz.settings import hosted
from arcface_viz.training import build_compare_trainers, reconfigure
from pages._live import (
    get_or_build,
    live_buttons,
    norm_rows,
    norm_views,
    play,
    shown_frame,
    state_chart,
    state_fig,
)
from pages._ui import chart, columns, controls, page_state, sync_url
from toy_data import DATASETS, DatasetError, available_datasets, download, load_dataset

PAGE = "mnist"
TICK_SECONDS = 0.2
DIR_KEY = f"{PAGE}:data_dir"
SPEC = capped(MNIST_SPEC)  # the shared online app: fewer images, smaller batches
SMALL_TEST = 2000  # test sets up to this size are re-evaluated every frame; larger ones at epoch ends

st.title("Live training: MNIST")
st.caption("A small CNN maps each image to a 2-D or 3-D embedding, drawn normalised on the circle or sphere with "
           "the class weights W_j as rays. A margin (ArcFace, CosFace, SphereFace) makes each class keep an angular "
           "gap to its neighbours; Softmax and Norm-Softmax only have to get the class right. Compare two losses on "
           "the same images with *Compare* in the sidebar.")
values = page_state(PAGE, SPEC)
data_dir = None if hosted() else (st.session_state.get(DIR_KEY) or "").strip() or None  # a local path: not in URL
statuses = available_datasets(data_dir)
available = tuple(n for n in IMAGE_DATASETS if statuses[n].available)
wanted = values["dataset"]
if pick_available(statuses, wanted) != wanted:  # asked for (the link, the default) but not on this machine
    values["dataset"] = st.session_state[f"{PAGE}:dataset"] = pick_available(statuses, wanted)
    st.warning(f"**{DATASET_LABELS[wanted]}** is not available on this machine, so this lesson uses "
               f"**{DATASET_LABELS[values['dataset']]}**. See *How to get more data* below.",
               icon=":material/database:")
here = Spec(tuple(replace(p, choices=available) if p.name == "dataset" else p for p in SPEC))

with st.sidebar:
    st.header("Data")
    controls(PAGE, here, ("dataset", "max_train", "seed"), defaults_for={"dataset": ImageConfig.dataset_defaults})
    st.text_input("data directory (IDX files)", key=DIR_KEY, disabled=hosted(),
                  help="A folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                  "t10k-labels-idx1-ubyte (gzipped or not), or with an mnist/ or fashion-mnist/ sub-folder."
                  + (" Disabled on a hosted app." if hosted() else ""))
    st.header("Loss")
    controls(PAGE, SPEC, ("loss", *LOSSES[values["loss"]].params),
             defaults_for={"loss": ImageConfig.default_loss_params})
    st.header("Training")
    controls(PAGE, SPEC, ("dim", "optimizer", "lr", "batch_size", "warmup", "steps_per_frame"))
    st.header("Compare")
    controls(PAGE, SPEC, ("compare", "loss_b") if values["compare"] else ("compare",))
sync_url(SPEC, values)


def _download(name: str) -> None:
    """Download into the user cache with a progress bar; a failure is a message, never a traceback."""
    bar = st.progress(0.0, text=f"Downloading {DATASETS[name].title}…")
    files = DATASETS[name].download_files

    def progress(done: int, total: int | None, fname: str) -> None:
        i = files.index(fname) if fname in files else 0
        part = done / total if total else 0.0
        bar.progress(min(1.0, (i + part) / len(files)), text=f"{fname}: {done / 1e6:.1f} MB")

    try:
        download(name, progress=progress)
    except (DatasetError, OSError) as exc:
        bar.empty()
        st.error(f"The download failed: {exc}", icon=":material/cloud_off:")
        return
    st.rerun()


missing = [n for n in DATASETS if not statuses[n].available]
if missing:
    titles = " and ".join(DATASETS[n].title for n in missing)
    with st.expander(f"How to get more data: {titles} not on this machine", icon=":material/download:",
                     expanded=wanted in missing):
        st.markdown("Available now: " + ", ".join(f"**{DATASET_LABELS[n]}**" for n in available) + ".")
        for name in missing:
            spec = DATASETS[name]
            st.markdown(f"**{spec.title}**")
            st.code(statuses[name].message, language=None, wrap_lines=True)
            if st.button(f"Download {spec.title} ({spec.download_size_mb})", key=f"{PAGE}:download:{name}",
                         icon=":material/download:"):
                _download(name)
        st.caption("Or type a folder holding the four IDX files into *data directory* in the sidebar. On "
                   "Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs Fashion-MNIST where this app "
                   "finds it.")


@st.cache_resource(show_spinner="Loading the images…", max_entries=4)
def load(name: str, folder: str | None, max_train: int, seed: int):
    """One copy per data set and subset for every visitor (a resource, not pickled per session): trainers
    only read the images."""
    return load_dataset(name, folder, max_train=max_train, seed=seed)


def build(v: dict) -> list:
    """One trainer, or two for compare mode (same images, seed, batches and initial CNN; second loss on the left)."""
    cfg = ImageConfig.from_values(v, data_dir=data_dir)
    data = load(v["dataset"], data_dir, v["max_train"], v["seed"])
    if v["compare"]:
        return list(build_compare_trainers(cfg, losses=(v["loss_b"], v["loss"]), loss_params=(None, cfg.loss_params),
                                           data=data))
    return [cfg.build(data=data)]


def apply_live(run: LiveSession, v: dict) -> None:
    """Loss parameters, learning rate and warm-up take effect at the next step of every trainer."""
    names = [v["loss_b"], v["loss"]] if v["compare"] else [v["loss"]]
    for trainer, name in zip(run.trainers, names, strict=True):
        reconfigure(trainer, ImageConfig.from_values(v, loss=name if name != v["loss"] else None, data_dir=data_dir))


def frame_extras(trainers: list, snaps: list) -> list[dict]:
    """What the figures read from each trainer at a frame: the drawn images' predictions, the confusion on the
    test set (evaluated now when it is small, else the last epoch end's) with the top pair's example images,
    and the epoch ends so far."""
    fresh = len(trainers[0].data.y_test) <= SMALL_TEST
    out = []
    for trainer, snap in zip(trainers, snaps, strict=True):
        conf = confusion(trainer, k=5, fresh=fresh)
        examples = None
        if conf.pairs:
            top = conf.pairs[0]
            a, b = (top.a, top.b) if top.a_as_b >= top.b_as_a else (top.b, top.a)
            examples = (a, b, confused_examples(trainer, a, b, k=8))
        out.append({"pred": trainer.sample_predictions(snap), "conf": conf, "examples": examples,
                    "epochs": list(trainer.epoch_log)})
    return out


run = get_or_build(PAGE, {**values, "data_dir": data_dir or ""}, build, live_keys=LIVE_KEYS,
                   apply_live=apply_live, extras=frame_extras)
if run is None:
    st.stop()
st.caption(run.trainers[0].data.source)
live_buttons(PAGE, run, values["steps_per_frame"])


def figures(run: LiveSession) -> dict:
    """The frame on screen as status lines, figures (dicts in the browser's form) and tables: built once per
    frame of a run, for every visitor who shows it."""
    trainers, snaps, extras = run.trainers, run.frame.snaps, run.frame.extras
    titles = [LOSSES[t.loss_fn.name].label for t in trainers]
    spe, first = trainers[0].steps_per_epoch, snaps[0]
    out: dict = {"progress": ((first.step % spe) / spe, f"epoch {first.step // spe + 1}: step {first.step % spe:,} "
                              f"of {spe:,} ({trainers[0].batch_size} images each)"), "status": [], "panels": [],
                 "titles": titles}
    for i, (trainer, snap, ex, hist, title) in enumerate(zip(trainers, snaps, extras, run.history, titles,
                                                              strict=True)):
        full = "—" if snap.epoch_test_acc is None else f"{100 * snap.epoch_test_acc:.2f}%"
        speed = "—" if snap.images_per_second is None else f"{snap.images_per_second:,.0f}"
        state = state_readout(snap.state)
        out["status"].append(f"**{title}** — step {snap.step:,} · epoch {snap.epoch:.2f} · loss {snap.loss:.3f} · "
                             f"test {100 * snap.test_acc:.1f}% on {len(snap.labels):,} drawn images · whole test set "
                             f"at the last epoch end {full} · {speed} images/s" + (f" · {state}" if state else ""))
        names = list(trainer.data.classes)
        hover = hover_texts(trainer, snap, ex["pred"])
        fig = embedding_figure(snap.embeddings, snap.labels, snap.centres, class_names=names, hover_text=hover,
                               title=f"{title}: test images and class centres W_j", all_classes=True,
                               uirevision=f"emb-{i}", height=500, subcentres=snap.subcentres,
                               dominant=snap.dominant)
        flat = snap.embeddings.shape[1] == 2
        conf, examples = ex["conf"], ex["examples"]
        cn = conf.classes
        out["panels"].append({
            "emb": (attach_sample_ids(fig, snap.labels, len(names)) if flat else fig).to_dict(),
            "map": None if flat else sphere_map_figure(snap.embeddings, snap.labels, snap.centres, names, hover,
                                                       uirevision=f"map-{i}").to_dict(),
            "curves": curves_with_epochs(run.curves(i), [e for e in ex["epochs"] if e.step <= snap.step],
                                         title=f"{title}: loss and accuracy").to_dict(),
            "theta": wire(theta_histogram_spec(hist, title=f"θ_yi over training (Fig. 4a) — {title}")),
            "conf": confusion_figure(conf, title=f"Confusion on the test set (step {conf.step:,})").to_dict(),
            "pairs": [{"a ↔ b": f"{cn[p.a]} ↔ {cn[p.b]}", "a taken for b": p.a_as_b, "b taken for a": p.b_as_a,
                       "∠(W_a, W_b)": f"{p.angle_deg:.1f}°"} for p in conf.pairs],
            "examples": None if examples is None or not len(examples[2]) else (
                f"Test images of {cn[examples[0]]} taken for {cn[examples[1]]}:",
                thumbnails(trainer.data.x_test[examples[2]], size=56), [f"#{j}" for j in examples[2]]),
        })
    return out


def gallery(trainer, snap, positions: list[int], predictions) -> None:
    """The clicked test images with their class and the prediction."""
    if not positions:
        st.caption("Click a point (or box-select several) to see the images behind it.")
        return
    names = trainer.data.classes
    pos = positions[:12]
    caps = [f"#{trainer.sample_ids[p]}: {names[snap.labels[p]]}"
            + ("" if predictions[p] == snap.labels[p] else f" → {names[predictions[p]]}") for p in pos]
    st.image(thumbnails(trainer.sample_images[pos], size=84), caption=caps)


def embeddings(i: int, trainer, snap, pred, panel: dict) -> None:
    """The drawn test images on the circle (clickable) or the sphere (plus a clickable flat map)."""
    if panel["map"] is None:
        event = chart(panel["emb"], key=f"{PAGE}-emb-{i}", on_select="rerun",
                      selection_mode=("points", "box", "lasso"))
    else:
        sphere, flat = st.tabs(["Sphere", "Flat map (click a point)"])
        with sphere:
            chart(panel["emb"], key=f"{PAGE}-emb-{i}")
        with flat:
            event = chart(panel["map"], key=f"{PAGE}-map-{i}", on_select="rerun", selection_mode=("points", "box"))
    gallery(trainer, snap, selected_samples(event.selection if event else None), pred)


def confusion_block(i: int, panel: dict, left, right) -> None:
    """The test confusion matrix (left) and the most confused pairs with their angles and examples (right)."""
    with left:
        chart(panel["conf"], key=f"{PAGE}-conf-{i}")
    if not panel["pairs"]:
        right.caption("No test image is confused.")
        return
    right.markdown("**Most confused pairs** and the angle between their class centres W_j:")
    right.dataframe(panel["pairs"], hide_index=True, width="stretch")
    if panel["examples"]:
        caption, images, captions = panel["examples"]
        right.caption(caption)
        right.image(images, caption=captions)


def draw(run: LiveSession) -> None:
    shown = shown_frame(run, figures)
    fraction, text = shown["progress"]
    st.progress(fraction, text=text)
    for col, status in zip(columns(len(shown["status"])), shown["status"], strict=True):
        col.markdown(status)
    trainers, snaps, extras, panels = run.trainers, run.frame.snaps, run.frame.extras, shown["panels"]
    for i, (col, trainer, snap, ex, panel) in enumerate(zip(columns(len(panels)), trainers, snaps, extras,
                                                             panels, strict=True)):
        with col:
            embeddings(i, trainer, snap, ex["pred"], panel)
    norm_views(PAGE, run, shown["titles"], list(trainers[0].data.classes))
    # one run: two pictures side by side; compare mode: one column per run, pictures stacked
    cols = st.columns(2) if len(panels) == 1 else st.columns(len(panels))
    slots = [(cols[0], cols[1])] if len(panels) == 1 else [(c, c) for c in cols]
    for i, ((left, right), panel, title) in enumerate(zip(slots, panels, shown["titles"], strict=True)):
        with left:
            chart(panel["curves"], key=f"{PAGE}-curves-{i}")
            state_chart(PAGE, run, i, title)
        with right:
            chart(panel["theta"], key=f"{PAGE}-theta-{i}")
    cols = st.columns(2) if len(panels) == 1 else st.columns(len(panels))
    slots = [(cols[0], cols[1])] if len(panels) == 1 else [(c, c) for c in cols]
    for i, ((left, right), panel) in enumerate(zip(slots, panels, strict=True)):
        confusion_block(i, panel, left, right)


def rows(view: LiveSession) -> list:
    """The frame a view of the run shows while it trains, as the player's rows (pages/_player.py): the same
    content as :func:`draw`, from the same figures, without the clicks (the player has none: a paused page draws
    with :func:`draw`, whose charts take clicks)."""
    shown = view.run.memo((view.cursor, view.max_snapshots), lambda: figures(view), frame=view.cursor)
    fraction, text = shown["progress"]
    panels, titles = shown["panels"], shown["titles"]
    out = [[[{"progress": fraction, "text": text}]], [[{"md": line}] for line in shown["status"]]]
    out.append([[{"fig": p["emb"], "key": f"emb-{i}"}, *([{"fig": p["map"], "key": f"map-{i}"}] if p["map"] else []),
                 {"caption": "Pause to click a point (or box-select several) and see the images behind it."}]
                for i, p in enumerate(panels)])
    out += norm_rows(view, titles, list(view.trainers[0].data.classes))
    lower, confusion = [], []
    for i, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        state = state_fig(view, i, title)
        lower.append(([{"fig": panel["curves"], "key": f"curves-{i}"}]
                      + ([{"fig": wire(state.to_dict()), "key": f"state-{i}"}] if state is not None else []),
                      [{"fig": panel["theta"], "key": f"theta-{i}"}]))
        pairs = [{"md": "**Most confused pairs** and the angle between their class centres W_j:"},
                 {"table": panel["pairs"]}] if panel["pairs"] else [{"caption": "No test image is confused."}]
        if panel["examples"]:
            caption, images, captions = panel["examples"]
            pairs += [{"caption": caption}, {"images": images, "captions": captions}]
        confusion.append(([{"fig": panel["conf"], "key": f"conf-{i}"}], pairs))
    for block in (lower, confusion):  # one run: two pictures side by side; compare mode: one column per run
        out.append(list(block[0]) if len(block) == 1 else [left + right for left, right in block])
    return out


@st.fragment(run_every=TICK_SECONDS if run.running else None)
def live() -> None:
    play(PAGE, run, values["steps_per_frame"], TICK_SECONDS, rows, still=draw)


live()
