"""A trained run as one file: save it, and resume it where it stopped (in the UI or the command line).

The file is a ``torch.save`` of plain values only (dicts, lists, strings, numbers, tensors), read back with
``torch.load(weights_only=True)``: a file is never unpickled into arbitrary objects. It holds

* ``format`` / ``version``: what the file is (:data:`FORMAT`, :data:`VERSION`);
* ``key``, ``config``, ``settings``: the model, its hyperparameters, the training settings (seed included);
* ``slot``: the run's newest good checkpoint (Session.export_state): parameters, optimiser states, the states of
  every random generator of the run, and its step;
* ``history``: the per-step loss terms and the held-out curves up to that step;
* ``data``: the training and held-out points themselves (so a drawn or uploaded set resumes exactly) with the
  run spec's data fields (built-in dataset, points, noise, training points kept), used to put the tab's controls
  back and, for a built-in dataset, its true density;
* ``digest``: a SHA-256 over everything else, so that a file changed after it was saved (or cut short in a way
  torch.load still reads) is refused.

:func:`read` refuses, with a one-line reason (:class:`ModelFileError`), a file that is not a zip torch file or is
damaged, another kind of file, another version, an unknown model, a changed file, or settings out of range.
Resuming (:func:`restore`) gives the same next steps as never stopping (same device): the checkpoint holds the
generators' states (tests/test_saving.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from typing import Any

import numpy as np
import torch

from models import REGISTRY, ConfigError, TrainSettings

from .datasets import DATASETS, DataSplit, make_split
from .session.history import History

FORMAT = "generative-models-playground/run"
VERSION = 1
MAX_FILE_BYTES = 200 * 1024 * 1024  # a 2D model's run is a few MB at most; anything far larger is not one


class ModelFileError(ValueError):
    """A model file that cannot be used (the message says why, in one line)."""


# --- the history as plain values ---------------------------------------------------------------------
def history_to_plain(h: History) -> dict:
    terms = {k: torch.from_numpy(np.array(v[: h.n], np.float32)) for k, v in h.step_terms.items()}
    return {"n": int(h.n), "terms": terms,
            "evals": {k: {"steps": torch.tensor(s, dtype=torch.int64), "values": torch.tensor(v, dtype=torch.float64)}
                      for k, (s, v) in h.evals.items()}}


def history_from_plain(d: dict) -> History:
    h = History()
    n = int(d["n"])
    for k, v in d["terms"].items():
        buf = np.full(max(1024, 2 * n), np.nan, np.float32)
        buf[:n] = v.numpy()[:n]
        h.step_terms[k] = buf
    h.n = n
    for k, e in d["evals"].items():
        h.evals[k] = ([int(s) for s in e["steps"].tolist()], [float(x) for x in e["values"].tolist()])
    return h


# --- the digest ---------------------------------------------------------------------------------------
def _feed(h, obj) -> None:
    """Feed a canonical byte form of a tree of plain values to the hash h (dict keys sorted)."""
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(repr(k).encode() + b":")
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(repr(obj).encode())


def digest(blob: dict) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in blob.items() if k != "digest"})
    return h.hexdigest()


# --- writing ------------------------------------------------------------------------------------------
def _plain(obj):
    """Optimiser states carry tuples and the odd None / bool: all fine for weights_only; numpy scalars are not."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def data_fields(data: DataSplit, spec: dict | None = None) -> dict:
    """What the file keeps of the data: the points, their name and box, and the run spec's data fields."""
    info = {k: v for k, v in data.info.items() if isinstance(v, (str, int, float, bool))}
    return {"name": data.name, "train": torch.as_tensor(np.asarray(data.train, np.float32)),
            "test": torch.as_tensor(np.asarray(data.test, np.float32)), "box": [float(b) for b in data.box],
            "info": json.dumps(info), "spec": json.dumps(spec or {})}


def to_blob(session, spec: dict | None = None) -> dict:
    """The file's content for a session (a local Session or a worker's RemoteSession: both export_state)."""
    state = session.save_state()
    slot = state["slot"]
    blob = {"format": FORMAT, "version": VERSION, "key": session.key, "config": dict(state["config"]),
            "settings": dict(state["settings"]), "step": int(slot["step"]),
            "slot": _plain({"state": slot["state"], "opts": slot["opts"], "rng": slot["rng"], "step": slot["step"]}),
            "history": history_to_plain(state["history"]), "data": data_fields(session.data, spec)}
    blob["digest"] = digest(blob)
    return blob


def save(session, path, spec: dict | None = None) -> int:
    """Write the run to `path`; returns its step."""
    blob = to_blob(session, spec)
    torch.save(blob, path)
    return blob["step"]


# --- reading ------------------------------------------------------------------------------------------
def read(path_or_bytes) -> dict:
    """The checked content of a model file (ModelFileError with a one-line reason when it cannot be used)."""
    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            size, src = len(path_or_bytes), io.BytesIO(path_or_bytes)
        else:
            size, src = os.path.getsize(path_or_bytes), path_or_bytes
    except OSError as err:
        raise ModelFileError(f"cannot read the file: {err.strerror or err}") from None
    if size > MAX_FILE_BYTES:
        raise ModelFileError(f"the file is {size / 2**20:.0f} MB: a playground model file is a few MB at most")
    try:
        blob = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many kinds on a damaged or foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Weights only" in str(err) or "Unsupported global" in str(err):
            reason = "it holds objects other than plain values and tensors, which are never unpickled"
        raise ModelFileError(f"not a playground model file, or damaged ({reason[:160]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError("not a playground model file (a model saved by this playground's Save button or "
                             "`train --save-model`)")
    if blob.get("version") != VERSION:
        raise ModelFileError(f"saved by another version of the playground (file format {blob.get('version')!r}; "
                             f"this one reads {VERSION})")
    key = blob.get("key")
    if key not in REGISTRY:
        raise ModelFileError(f"a model this playground does not have ('{key}')")
    if blob.get("digest") != digest(blob):
        raise ModelFileError("the file was changed after it was saved (its checksum does not match)")
    try:
        REGISTRY[key].Config.make(**blob["config"])
        TrainSettings.make(**blob["settings"])
        _check_data(blob["data"])
        int(blob["slot"]["step"]), blob["slot"]["state"], history_from_plain(blob["history"])
    except ConfigError as err:
        raise ModelFileError(f"its settings are not valid here: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"the file is incomplete ({type(err).__name__}: {err})") from None
    return blob


def _check_data(d: dict) -> None:
    for part in ("train", "test"):
        x = d[part]
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 2 or not torch.isfinite(x).all():
            raise ValueError(f"its {part} points are not a finite (n, 2) array")
    if len(d["box"]) != 4 or not all(math.isfinite(b) for b in d["box"]):
        raise ValueError("its box is not 4 finite numbers")
    json.loads(d["info"]), json.loads(d["spec"])


def spec_fields(blob: dict) -> dict:
    """The run spec's data fields saved with it (dataset, n_points, noise, source, ...), as a dict."""
    return json.loads(blob["data"]["spec"])


def data_from_blob(blob: dict) -> DataSplit:
    """The saved points as a DataSplit; a built-in dataset gets its true density and modes back (its points are
    the saved ones whatever the generator of this version would draw)."""
    d = blob["data"]
    train, test = d["train"].numpy().astype(np.float32), d["test"].numpy().astype(np.float32)
    info = json.loads(d["info"])
    name = d["name"]
    if name in DATASETS and "noise" in info:
        ref = make_split(name, 20, noise=float(info["noise"]), seed=0)  # its density and modes (no points kept)
        return DataSplit(train, test, name, tuple(d["box"]), log_prob=ref.log_prob, modes=ref.modes,
                         mode_std=ref.mode_std, info=info)
    return DataSplit(train, test, name, tuple(d["box"]), info=info)


def session_state(blob: dict) -> dict:
    """The session's import_state argument (Session.export_state's form)."""
    return {"slot": blob["slot"], "history": history_from_plain(blob["history"]), "settings": blob["settings"],
            "config": blob["config"]}


def restore(blob: dict, device: str = "auto", open_session=None) -> Any:
    """A session that goes on from the saved run: built by `open_session` (workers.open_session in the app; a
    local Session by default) with the saved model, config, data and settings, then given its checkpoint."""
    if open_session is None:
        from .session import Session as open_session
    data = data_from_blob(blob)
    settings = TrainSettings.make(**blob["settings"])
    sess = open_session(blob["key"], dict(blob["config"]), data, settings, device=device)
    try:
        sess.import_state(session_state(blob))
    except (RuntimeError, KeyError, ValueError) as err:  # a state dict that does not fit the model it names
        close = getattr(sess, "close", None)
        if close is not None:
            close()
        raise ModelFileError(f"its weights do not fit a {blob['key']} with its settings "
                             f"({str(err).splitlines()[0][:160]})") from None
    return sess


__all__ = ["FORMAT", "VERSION", "ModelFileError", "data_from_blob", "read", "restore", "save", "spec_fields",
           "to_blob"]
