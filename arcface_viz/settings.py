"""Operator settings for the backend (full-scale runs), read from the environment.  No Streamlit here.

=========================  ==========================================================================
``ARCFACE_VIZ_HOSTED=1``   the app is hosted for the public: the backend page stays locked unless the
                           operator enables it explicitly
``ARCFACE_VIZ_BACKEND=1``  enable the backend (the page also accepts ``st.secrets["backend"]["enabled"]``)
``ARCFACE_VIZ_RUNS``       folder for run directories (default ``./runs``)
``ARCFACE_VIZ_DATA_ROOTS`` folders data may be read from / written to, ``os.pathsep``-separated (default
                           ``./data`` and the user cache ``~/.cache/arcface-viz``)
``ARCFACE_VIZ_REGISTRY``   the SQLite file of the run registry (default ``<runs>/registry.sqlite3``)
=========================  ==========================================================================

:func:`confine` is the one gate every user-supplied path goes through: it resolves ``..`` and symlinks and
refuses a path that ends up outside every allowed root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: the words read as true / false, in any case: environment flags here, URL and CLI values in params.Param
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE_WORDS


def hosted() -> bool:
    """True when the app is served to the public (``ARCFACE_VIZ_HOSTED=1``)."""
    return _flag("ARCFACE_VIZ_HOSTED")


def backend_enabled(secret_enabled: object = None) -> bool:
    """True when the operator switched the backend on: ``ARCFACE_VIZ_BACKEND=1`` or a truthy secrets value.

    ``secret_enabled`` is ``st.secrets["backend"]["enabled"]`` as the page read it (None when absent), so that
    this module never imports Streamlit.  Hosting does not enable anything by itself: a hosted app is locked
    unless one of these two is set.
    """
    if _flag("ARCFACE_VIZ_BACKEND"):
        return True
    if isinstance(secret_enabled, str):
        return secret_enabled.strip().lower() in TRUE_WORDS
    return secret_enabled is True


def _user_cache_dir() -> Path:
    """Where the app caches downloads: ``$ARCFACE_VIZ_DATA``, else ``$XDG_CACHE_HOME/arcface-viz``, else ~/.cache."""
    if os.environ.get("ARCFACE_VIZ_DATA"):
        return Path(os.environ["ARCFACE_VIZ_DATA"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "arcface-viz"
    return Path.home() / ".cache" / "arcface-viz"


def runs_root() -> Path:
    """The folder that holds one sub-folder per run (``ARCFACE_VIZ_RUNS``, default ``./runs``), absolute."""
    return Path(os.environ.get("ARCFACE_VIZ_RUNS") or "runs").expanduser().resolve()


def data_roots() -> list[Path]:
    """Folders data may be read from or written to (``ARCFACE_VIZ_DATA_ROOTS``), resolved, in order."""
    raw = os.environ.get("ARCFACE_VIZ_DATA_ROOTS")
    if raw:
        parts = [p for p in raw.split(os.pathsep) if p.strip()]
    else:
        parts = ["data", str(_user_cache_dir())]
    return [Path(p.strip()).expanduser().resolve() for p in parts]


def registry_path() -> Path:
    """The SQLite file of the run registry (``ARCFACE_VIZ_REGISTRY``, default ``runs_root()/registry.sqlite3``)."""
    raw = os.environ.get("ARCFACE_VIZ_REGISTRY")
    return Path(raw).expanduser().resolve() if raw else runs_root() / "registry.sqlite3"


def confine(path: str | os.PathLike, roots: Iterable[str | os.PathLike], what: str = "path",
            base: str | os.PathLike | None = None) -> Path:
    """``path`` resolved (``~``, ``..`` and every symlink), if it lies inside one of ``roots``; else ValueError.

    A relative path is taken relative to ``base`` (default: the working directory, as the trainer reads it;
    the page passes the first data root, so ``"faces"`` means ``<root>/faces``).  The path does not need to
    exist yet (an output folder), but whatever part of it exists is resolved, so a symlink that points out of
    the roots is refused just like ``../../etc``.
    """
    roots = [Path(r).expanduser().resolve() for r in roots]
    if not roots:
        raise ValueError(f"{what}: no allowed folders are configured (set ARCFACE_VIZ_DATA_ROOTS)")
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError(f"{what}: empty path")
    if "\x00" in str(text):
        raise ValueError(f"{what}: the path contains a NUL character")
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = Path(base if base is not None else os.getcwd()).expanduser() / p
    resolved = p.resolve()  # strict=False: resolves the existing prefix, symlinks included
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    if ".." in Path(text).parts:
        how = f" (it climbs out through '..' to {resolved})"
    elif resolved != Path(os.path.abspath(p)):
        how = f" (a symlink leads it to {resolved})"
    else:
        how = ""
    raise ValueError(f"{what} {text!r} is outside the allowed folders {allowed}{how}; "
                     "paths are confined to ARCFACE_VIZ_DATA_ROOTS / ARCFACE_VIZ_RUNS")
