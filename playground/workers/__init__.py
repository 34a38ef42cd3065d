"""Where a visitor's run trains: a worker of its own, so that runs share neither the web server's interpreter
lock nor one another's (../shared/ARCHITECTURE.md, "Where the shape is going").

``open_session(...)`` takes Session's arguments and returns the run, trained

* ``process`` (the default): in a local worker process from a pool started with the app (local.py);
* ``ray``: in a Ray actor placed anywhere on a cluster (rayactor.py; PLAYGROUND_RAY_ADDRESS, or
  ``python app.py --ray ADDRESS``; "local" starts an instance of this machine's cores);
* ``thread``: in the web process itself, as a plain Session (PLAYGROUND_WORKERS=thread: the tests of the tabs'
  logic, a debugger).

Either way the tab sees one interface (Session's; RemoteSession mirrors it) and calls ``close()`` when the
visitor is done with a run (their page closed, Reset, an idle timeout): the worker is freed.
"""

from __future__ import annotations

import os
import threading

MODES = ("process", "ray", "thread")
_CONFIG = {"mode": os.environ.get("PLAYGROUND_WORKERS", "process"),
           "ray_address": os.environ.get("PLAYGROUND_RAY_ADDRESS") or None}
if _CONFIG["ray_address"] and "PLAYGROUND_WORKERS" not in os.environ:
    _CONFIG["mode"] = "ray"
_BACKEND: list = []
_LOCK = threading.Lock()


def configure(mode: str | None = None, ray_address: str | None = None) -> str:
    """Choose where runs train (see the module docstring); a Ray address implies mode "ray". Returns the mode."""
    if ray_address:
        mode, _CONFIG["ray_address"] = "ray", ray_address
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"unknown worker mode '{mode}' (one of {', '.join(MODES)})")
        if mode != _CONFIG["mode"]:
            shutdown()
        _CONFIG["mode"] = mode
    return _CONFIG["mode"]


def mode() -> str:
    return _CONFIG["mode"]


def backend():
    """The pool runs take their workers from (made on first use; None in thread mode)."""
    if _CONFIG["mode"] == "thread":
        return None
    with _LOCK:
        if not _BACKEND:
            if _CONFIG["mode"] == "ray":
                from .rayactor import RayBackend

                _BACKEND.append(RayBackend(_CONFIG["ray_address"] or "local"))
            else:
                from .local import WorkerPool

                pool = WorkerPool()
                pool.fill()
                _BACKEND.append(pool)
        return _BACKEND[0]


def start() -> str:
    """Start the workers ahead of the first visitor (the app calls it); returns a line saying where runs train."""
    b = backend()
    if b is None:
        return "in the web process (threads)"
    return b.describe()


def shutdown() -> None:
    with _LOCK:
        pools, _BACKEND[:] = list(_BACKEND), []
    for b in pools:
        b.close()


def open_session(model_key: str, config: dict | None, data, settings=None, device: str = "auto", **kw):
    """A new run (Session's arguments) in a worker of the configured mode."""
    b = backend()
    if b is None:
        from ..session import Session

        return Session(model_key, config, data, settings, device=device, **kw)
    from .remote import RemoteSession

    return RemoteSession(b, model_key, config, data, settings, device=device, **kw)
