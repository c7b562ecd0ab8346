"""Lesson: which s and m?  Train a grid of small models at once and colour each cell by what came out."""

from dataclasses import replace

import streamlit as st

from arcface_viz.losses import LOSSES
from arcface_viz.params import ParamError, Spec
from arcface_viz.plots.sweep import clicked_cell, sweep_map_figure
from arcface_viz.sweep import (
    PRESETS,
    SHARED,
    SWEEP_SPEC,
    axis_label,
    axis_names,
    config_from_values,
    default_axis_values,
    lesson_of,
    lesson_values,
    preset_matches,
    preset_values,
    summary,
    sweep_limits,
)
from pages._ui import chart, controls, open_lesson, page_state, sync_url

PAGE = "sweep"
OPEN_KEY = f"{PAGE}:open"  # the cell to open, set by a click (a callback) and acted on in the script

st.title("Which s and m?")
st.caption("A map answers it: every cell is a small model trained with its two parameter values, all cells at "
           "once as one batched model. Colour shows what came out; grey cells with ✗ did not train; the dashed "
           "line is where the theory says the margin stops fitting between neighbouring class centres. Click a "
           "cell to open its run in the toy or MNIST lesson.")

LIMITS = sweep_limits()


def _offered() -> tuple[str, ...]:
    """Data sets this app offers that are on this machine (toy sets always are; digits too)."""
    from toy_data import available_datasets

    status = available_datasets()
    return tuple(d for d in LIMITS.datasets if d not in status or status[d].available)


def _spec() -> Spec:
    lesson_steps = max(LIMITS.max_steps.values())
    caps = {"dataset": dict(choices=_offered()), "steps": dict(max=lesson_steps),
            "seeds": dict(max=LIMITS.max_seeds)}
    return Spec(tuple(replace(p, **caps[p.name]) if p.name in caps else p for p in SWEEP_SPEC))


SPEC = _spec()
values = page_state(PAGE, SPEC)
if values["dataset"] not in SPEC["dataset"].choices:
    values["dataset"] = SPEC["dataset"].default


def _now(name: str):
    """A control's value as its widget holds it now (a callback runs before the store is updated)."""
    return st.session_state.get(f"{PAGE}:{name}", values[name])


def _axis(which: str, dataset: str, loss: str) -> None:
    """The axis' parameter (only those this loss and data set have) and its comma-separated values."""
    names = axis_names(dataset, loss)
    if values[which] not in names:  # the loss changed: an axis it does not have becomes another parameter
        other = values["y" if which == "x" else "x"]
        values[which] = st.session_state[f"{PAGE}:{which}"] = next(n for n in names if n != other)
        values[f"{which}_values"] = st.session_state[f"{PAGE}:{which}_values"] = default_axis_values(values[which])
    here = Spec((replace(SPEC[which], choices=names),))
    controls(PAGE, here, (which,), defaults_for={which: lambda n: {f"{which}_values": default_axis_values(n)}})
    key = f"{PAGE}:{which}_values"
    if key not in st.session_state:
        st.session_state[key] = values[f"{which}_values"]
    values[f"{which}_values"] = st.text_input(SPEC[f"{which}_values"].title, key=key,
                                              help=f"Values of {axis_label(values[which])}, separated by commas.")


with st.sidebar:
    st.header("Map")
    controls(PAGE, SPEC, ("preset",), defaults_for={"preset": preset_values})
    controls(PAGE, SPEC, ("dataset",), defaults_for={"dataset": lambda d: lesson_values(d, _now("loss"))})
    controls(PAGE, SPEC, ("loss",), defaults_for={"loss": lambda name: lesson_values(_now("dataset"), name)})
    dataset, loss = values["dataset"], values["loss"]
    _axis("x", dataset, loss)
    _axis("y", dataset, loss)
    controls(PAGE, SPEC, ("steps", "seed", "seeds"))
    st.header("Other settings")
    st.caption("The same in every cell.")
    on_axes = {values["x"], values["y"]}
    lesson = lesson_of(dataset)
    others = [n for n in ("dim", "classes", "lr", "optimizer", *LOSSES[loss].params)
              if n not in on_axes and n in lesson.spec]
    controls(PAGE, SPEC, others)
    if LIMITS.notice:
        st.info(LIMITS.notice, icon=":material/public:")
sync_url(SPEC, values)

try:
    config = config_from_values(values, LIMITS)
except ParamError as exc:
    st.error(f"This map cannot be trained: {exc}", icon=":material/error:")
    st.stop()
preset = PRESETS.get(values["preset"])
if preset and preset_matches(preset, config):  # the preset's words only while its map is the one drawn
    st.markdown(preset.text)

if st.session_state.get(OPEN_KEY):  # a cell was clicked: its run, in its lesson, with exactly its settings
    page_key, path, query = st.session_state.pop(OPEN_KEY)
    open_lesson(page_key, path, query)


def _train() -> None:
    st.session_state[f"{PAGE}:train"] = True


runs = len(config.x.values) * len(config.y.values) * len(config.seeds)
result = SHARED.get(config)
if result is None and st.session_state.pop(f"{PAGE}:train", False):
    bar = st.progress(0.0, text="starting…")
    try:
        result = SHARED.run(config, progress=lambda f, text: bar.progress(min(1.0, f), text=text))
    except ValueError as exc:  # a data set that cannot be loaded, settings a lesson refuses
        st.error(f"This map cannot be trained: {exc}", icon=":material/error:")
        st.stop()
    bar.empty()
if result is None:
    st.info(f"**{runs} models** ({len(config.y.values)} rows × {len(config.x.values)} columns × "
            f"{len(config.seeds)} seed(s)), {config.steps:,} steps each, on {dataset}. A map is trained once per "
            "settings and then shared: whoever opens the same settings sees it at once.", icon=":material/grid_on:")
    st.button("Train the map", type="primary", icon=":material/play_arrow:", key=f"{PAGE}:train-button",
              on_click=_train)
    st.stop()


def _open(ix: int, iy: int) -> None:
    page, query = result.link(ix, iy)
    st.session_state[OPEN_KEY] = (lesson.page_key, page, query)


def _clicked() -> None:
    cell = clicked_cell(st.session_state.get(f"{PAGE}-map"))
    if cell is not None:
        _open(*cell)


controls(PAGE, SPEC, ("metric",))
metric = values["metric"]
seeds = f"seed {config.seeds[0]}" if len(config.seeds) == 1 else f"mean of {len(config.seeds)} seeds"
title = (f"{LOSSES[loss].label} on {dataset}, {config.steps:,} steps, {seeds}"
         f"<br><sup>{runs} models trained in {result.seconds:.1f} s</sup>")
chart(sweep_map_figure(result, metric, title=title), key=f"{PAGE}-map", on_click=_clicked)
for line in summary(result):
    st.markdown(line)

names = {(ix, iy): f"{axis_label(config.x.name)} = {c.x:g}, {axis_label(config.y.name)} = {c.y:g}"
         for c in result.cells for ix, iy in [(c.ix, c.iy)]}
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
pick = c1.selectbox("Open a cell's run in its lesson", list(names), format_func=names.get, key=f"{PAGE}:cell")
c2.button(f"Open in the {lesson.name} lesson", key=f"{PAGE}:open-button", icon=":material/open_in_new:",
          on_click=_open, args=pick)
with st.expander("The numbers (JSON, as `arcface-viz sweep --json` prints them)"):
    st.caption("The same map from the command line: `python -m arcface_viz sweep --dataset "
               f"{dataset} --loss {loss} --x {config.x.text()} --y {config.y.text()} --steps {config.steps} "
               f"--seed {','.join(map(str, config.seeds))}`" + "".join(f" --{k.replace('_', '-')} {v}"
                                                                       for k, v in config.fixed))
    st.json(result.to_json(), expanded=False)
