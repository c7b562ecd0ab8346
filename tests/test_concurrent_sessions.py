"""Many visitors at once: Streamlit sessions running side by side in one process, with different links, keep
their own state and their own training (issue 7, "Many visitors at once").

Every session is an AppTest of app.py driven from its own thread, all started together, as a server's
sessions share one Python process.  Each must show its own loss, data set and step count, hold no object
of another session, and train exactly as the same link trains when it is alone.

AppTest was written for one run at a time: each run puts a stand-in Runtime in the class attribute
``Runtime._instance`` and clears it when the run ends, switches the ``global.appTest`` option on and back
around the run, and compiles the scripts into a ScriptCache of its own.  Runs in several threads would clear
the first two under each other's feet, and compiling in several threads at once trips CPython 3.11's
"AST constructor recursion depth mismatch" (a server compiles each script once, under its one ScriptCache's
lock).  So the ``shared_runtime`` fixture makes these runs share what a server's sessions share: the option
stays on, a run whose stand-in was cleared uses the last one seen, and every run uses one ScriptCache.  The
app itself runs unchanged.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from app_helpers import button, open_page, player_figures, player_status
from streamlit import config
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner.script_cache import ScriptCache

from arcface_viz.training import build_toy_trainer

PAGE = "pages/toy_training.py"
LIVE_KEY = "_live:toy-training"
VALUES_KEY = "_values:toy-training"


@dataclass(frozen=True)
class Visitor:
    query: dict[str, str]
    label: str  # the loss as the page names it
    presses: int  # clicks on Step
    other_page: str | None = None  # a lesson this visitor opens first (its state keys are this visitor's only)
    labels: tuple[str, ...] = field(default=())  # compare mode: both losses, left first

    @property
    def steps(self) -> int:
        return self.presses * int(self.query["steps_per_frame"])


VISITORS = [
    Visitor({"loss": "arcface", "m2": "0.25", "dataset": "fig3", "seed": "1", "steps_per_frame": "5"}, "ArcFace", 2),
    Visitor({"loss": "cosface", "m3": "0.15", "dataset": "blobs", "classes": "5", "seed": "2",
             "steps_per_frame": "7"}, "CosFace", 3, other_page="pages/decision_margins.py"),
    Visitor({"loss": "sphereface", "dataset": "sphere", "classes": "4", "dim": "3", "seed": "3",
             "steps_per_frame": "11"}, "SphereFace", 4),
    Visitor({"loss": "arcface", "dataset": "moons", "seed": "4", "compare": "true", "loss_b": "softmax",
             "steps_per_frame": "3"}, "ArcFace", 2, labels=("Softmax", "ArcFace")),
]


def headers(at) -> list[str]:
    """The status lines of the frame the page's player shows."""
    return [m for m in player_status(at) if " — step " in m and " · loss " in m]


def visit(v: Visitor):
    """One visitor's whole visit: (another lesson,) the toy page from its link, Step pressed ``presses`` times."""
    if v.other_page:
        at = open_page(v.other_page)
        at.switch_page(PAGE)
        for k, val in v.query.items():
            at.query_params[k] = val
        at.run()
    else:
        at = open_page(PAGE, v.query)
    assert not at.exception, at.exception
    for _ in range(v.presses):
        button(at, "Step").click().run()
        assert not at.exception, at.exception
    return at


def run_together(fns: list[Callable[[], Any]], timeout: float = 600) -> list[Any]:
    """Call every function in a thread of its own, all released at once; their results, or the first error."""
    results: list[Any] = [None] * len(fns)
    errors: list[str] = []
    start = threading.Barrier(len(fns))

    def worker(i: int) -> None:
        try:
            start.wait()
            results[i] = fns[i]()
        except BaseException:  # noqa: BLE001 - reported below with the thread's traceback
            errors.append(f"thread {i}:\n{traceback.format_exc()}")

    threads = [threading.Thread(target=worker, args=(i,), name=f"visitor-{i}") for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a visitor's thread did not finish within {timeout} s"
    assert not errors, "\n".join(errors)
    return results


def embedding_points(at) -> list[np.ndarray]:
    """The points of every embedding figure (the first figure of each trained model), one array per class."""
    figs = player_figures(at)
    n = len(headers(at))
    out = []
    for fig in figs[:n]:
        for t in fig["data"]:
            if t.get("mode") == "markers" and t.get("x") is not None:
                coords = [t[k] for k in ("x", "y", "z") if t.get(k) is not None]
                out.append(np.array([_decode(c) for c in coords], dtype=float))
    return out


def _decode(values: Any) -> np.ndarray:
    """A plotly JSON array: a list, or numpy's base64 form {dtype, bdata}."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).astype(float)
    return np.asarray(values, dtype=float)


@pytest.fixture(scope="module")
def shared_runtime():
    """One Runtime stand-in for sessions that run at the same time (see the module's docstring)."""
    seen: list[Any] = []

    def instance(cls):
        if cls._instance is not None:
            seen[:] = [cls._instance]
            return cls._instance
        if seen:
            return seen[0]
        raise RuntimeError("Runtime hasn't been created!")

    def exists(cls) -> bool:
        return cls._instance is not None or bool(seen)

    before = config.get_option("global.appTest")
    one_cache, get_bytecode = ScriptCache(), ScriptCache.get_bytecode
    mp = pytest.MonkeyPatch()
    mp.setattr(Runtime, "instance", classmethod(instance))
    mp.setattr(Runtime, "exists", classmethod(exists))
    mp.setattr(ScriptCache, "get_bytecode", lambda self, path: get_bytecode(one_cache, path))
    config.set_option("global.appTest", True)
    try:
        yield
    finally:
        config.set_option("global.appTest", before)
        mp.undo()


@pytest.fixture(scope="module")
def together(shared_runtime):
    """Every visitor at once, each in its own thread."""
    return run_together([lambda v=v: visit(v) for v in VISITORS])


@pytest.mark.parametrize("i", range(len(VISITORS)), ids=[f"{v.label}-{v.query['dataset']}" for v in VISITORS])
def test_each_session_shows_its_own_loss_data_and_steps(together, i):
    v, at = VISITORS[i], together[i]
    heads = headers(at)
    labels = v.labels or (v.label,)
    assert len(heads) == len(labels), heads
    for head, label in zip(heads, labels, strict=True):
        assert head.startswith(f"**{label}** — step {v.steps:,} "), (head, v.steps)
    values = at.session_state[VALUES_KEY]
    for k, val in v.query.items():
        assert str(values[k]).lower() == val.lower(), (k, values[k], val)
        assert at.query_params[k] == val, (k, at.query_params[k], val)  # the visitor's link, unchanged
    sess = at.session_state[LIVE_KEY]
    assert sess.step == v.steps
    classes = int(v.query.get("classes", 8))  # TOY_SPEC's default when the link does not say
    assert [t.loss_fn.num_classes for t in sess.trainers] == [classes] * len(labels)
    assert [t.data.name for t in sess.trainers] == [v.query["dataset"]] * len(labels)
    # the figure is this visitor's: its loss in the title, its dimension
    fig = player_figures(at)[len(labels) - 1]
    assert labels[-1] in fig["layout"]["title"]["text"]
    kinds = {t["type"] for t in fig["data"]}
    assert ("scatter3d" in kinds) == (v.query.get("dim") == "3"), kinds


def test_no_session_holds_another_sessions_objects(together):
    states = [at.session_state.to_dict() for at in together]
    # keys: a lesson only one visitor opened has state in that visitor's session only
    for v, state in zip(VISITORS, states, strict=True):
        has_margins = any(k.startswith(("_values:decision-margins", "decision-margins:")) for k in state)
        assert has_margins == (v.other_page == "pages/decision_margins.py"), sorted(state)
    # objects: no value, trainer, model or tensor is shared between two sessions
    owners: dict[int, int] = {}

    def claim(obj: Any, who: int, what: str) -> None:
        prev = owners.setdefault(id(obj), who)
        assert prev == who, f"{what} of session {who} is the same object as one of session {prev}"

    for who, state in enumerate(states):
        claim(state[VALUES_KEY], who, "the lesson's values")
        sess = state[LIVE_KEY]
        claim(sess, who, "the live session")
        for trainer in sess.trainers:
            claim(trainer, who, "a trainer")
            claim(trainer.model, who, "a model")
            claim(trainer.optimizer, who, "an optimizer")
            for p in [*trainer.model.parameters(), *trainer.loss_fn.parameters()]:
                claim(p.untyped_storage().data_ptr(), who, "a weight tensor's memory")


def test_each_session_trains_as_it_would_alone(together):
    """The same link, pressed the same way, in a session of its own afterwards: the same embeddings.  A visitor
    whose seed, data or weights leaked into another's (a shared random generator, a shared cache entry)
    differs here."""
    alone = [visit(v) for v in VISITORS]
    for v, crowd, solo in zip(VISITORS, together, alone, strict=True):
        got, want = embedding_points(crowd), embedding_points(solo)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{v.label} on {v.query['dataset']}")
        assert headers(crowd) == headers(solo)


def _weights(trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in [*trainer.model.parameters(), *trainer.loss_fn.parameters()]])


def test_trainers_built_at_the_same_moment_keep_their_own_seed():
    """Two visitors pressing Reset at the same moment: each toy trainer starts from the weights its seed
    gives when built alone.  (Seeding torch's one global generator from several threads at once mixes the
    streams: this is what makes 'same seed, same run' hold for many visitors.)"""
    seeds, rounds = [0, 1, 2, 3], 25
    alone = {s: _weights(build_toy_trainer({"seed": s})) for s in seeds}
    mixed = []
    for _ in range(rounds):
        built = run_together([lambda s=s: _weights(build_toy_trainer({"seed": s})) for s in seeds])
        mixed += [s for s, w in zip(seeds, built, strict=True) if not torch.equal(w, alone[s])]
    assert not mixed, (f"{len(mixed)} of {rounds * len(seeds)} trainers built at the same moment did not get their "
                       f"seed's initial weights (seeds {sorted(set(mixed))})")


def test_serve_many_encodes_the_same_figure_and_reads_the_same_theme():
    """pages._ui.serve_many (hosted servers): orjson for plotly's JSON, the theme config read once; the JSON
    means the same figure and every config section reads as before."""
    import json

    import plotly.io as pio
    from streamlit import config

    from arcface_viz.plots.sphere import snapshot_spec
    from arcface_viz.plots.style import wire
    from arcface_viz.training import build_toy_trainer
    from pages._ui import _Plain, serve_many

    spec = wire(snapshot_spec(build_toy_trainer(seed=0).advance(20), class_names=list("01234567"), title="t"))
    engine, read = pio.json.config.default_engine, config.get_options_for_section
    before = pio.to_json(_Plain(spec), validate=False)
    sections = {s: read(s) for s in ("theme", "theme.sidebar", "server", "client")}
    try:
        assert "plotly json engine: orjson" in serve_many()
        assert serve_many() == ["plotly json engine: orjson"]  # the theme cache is not wrapped twice
        after = pio.to_json(_Plain(spec), validate=False)
        assert json.loads(after) == json.loads(before) and pio.json.config.default_engine == "orjson"
        for _ in range(2):
            assert {s: config.get_options_for_section(s) for s in sections} == sections
        config.get_options_for_section("theme")["base"] = "changed"  # a caller's copy, not the cache
        assert config.get_options_for_section("theme") == sections["theme"]
    finally:
        pio.json.config.default_engine, config.get_options_for_section = engine, read
