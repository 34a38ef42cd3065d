"""One run's settings as one value: the data, the model and its config, the training settings, the device.

A tab's controls, its share link and the command line all describe a run; :class:`RunSpec` is that
description, with no widget in it. A tab turns its controls' values into one (``FamilyTab.run_from``),
a link into one (:meth:`RunSpec.from_query`) and back (:meth:`RunSpec.to_query`), the way TensorFlow
Playground keeps one typed list of settings behind both its controls and its URL — here a dataclass per
visitor's click, not module-level state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np

from models import REGISTRY, ConfigError, TrainSettings

from .datasets import (
    DATASETS,
    DataError,
    DataSplit,
    make_split,
    parse_csv,
    parse_strokes,
    points_from_strokes,
    split_array,
)
from .drawpad import BOX as DRAW_BOX
from .linkdata import (
    LinkDataError,
    decode_points,
    decode_strokes,
    describe_left_out,
    encode_points,
    encode_strokes,
)

SOURCES = ("Built-in", "Draw", "Upload CSV")
DEVICES = ("auto", "cpu", "cuda")
N_POINTS = (100, 20000)  # the range the data slider and a link accept
TRAIN_POINTS = (0, 20000)  # training points kept (0: all), the overfitting study's slider (notes 3.2.5)
MAX_FILE_DIGEST = 32 * 1024 * 1024
LINK_FILES = os.path.join(tempfile.gettempdir(), "playground-links")  # the points of opened links, by content
LINK_FILES_AGE = 24 * 3600.0  # seconds a link's points are kept after the link was last opened


@dataclass
class RunSpec:
    """What one run is: where its data comes from, which model with which config, how it trains.

    `config` holds the model's Config fields by name (validated by :meth:`check`); `settings` the shared
    TrainSettings. For drawn data `sketch` is the pad's value and `draw_noise` the spread around the strokes;
    for an upload `csv` is the file's path. `noise` None means the dataset's own default.
    """

    model: str
    config: dict[str, Any] = field(default_factory=dict)
    settings: TrainSettings = field(default_factory=TrainSettings)
    dataset: str = "8gaussians"
    n_points: int = 2000
    noise: float | None = None
    source: str = "Built-in"
    sketch: Any = None
    draw_noise: float = 0.08
    csv: str | None = None
    standardise: bool = False
    device: str = "auto"
    train_points: int = 0  # keep only this many training points (0: all); the held-out points stay (notes 3.2.5)

    # --- checks ----------------------------------------------------------------------------------
    def check(self) -> RunSpec:
        """Validate the model, its config and the data choice (ConfigError / DataError, one line each);
        returns self."""
        if self.model not in REGISTRY:
            raise ConfigError(f"unknown model '{self.model}'")
        REGISTRY[self.model].Config.make(**self.config)
        if self.source not in SOURCES:
            raise DataError(f"unknown data source '{self.source}'")
        if self.source == "Built-in" and self.dataset not in DATASETS:
            raise DataError(f"unknown dataset '{self.dataset}'")
        if self.source == "Upload CSV" and not self.csv:
            raise DataError("upload a CSV file first")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device '{self.device}' (known: {', '.join(DEVICES)})")
        if not TRAIN_POINTS[0] <= int(self.train_points) <= TRAIN_POINTS[1]:
            raise DataError(f"training points kept: {self.train_points} is outside [{TRAIN_POINTS[0]}, "
                            f"{TRAIN_POINTS[1]}] (0 keeps them all)")
        return self

    def clamped_noise(self) -> float:
        ds = DATASETS[self.dataset]
        lo, hi = ds.noise_range
        return float(min(max(float(ds.noise if self.noise is None else self.noise), lo), hi))

    # --- data ------------------------------------------------------------------------------------
    def data_signature(self) -> tuple:
        """Equal for two specs exactly when they make the same data (drawn strokes and files by digest)."""
        seed, kept = self.settings.seed, int(self.train_points)
        if self.source == "Draw":
            return ("draw", hashlib.sha1(str(self.sketch).encode()).hexdigest(), self.n_points,
                    self._spread(), seed, kept)
        if self.source == "Upload CSV":
            return ("csv", _file_digest(self.csv), bool(self.standardise), seed, kept)
        return ("builtin", self.dataset, self.n_points, round(self.clamped_noise(), 4), seed, kept)

    def _spread(self) -> float:
        return float(min(max(float(self.draw_noise or 0.0), 0.0), 0.5))

    def build_data(self) -> DataSplit:
        """The run's training and held-out points (DataError with a one-line reason when they cannot be made),
        the training points cut to train_points when it is set (the held-out ones stay: notes 3.2.5)."""
        data = self._build_data()
        kept = int(self.train_points)
        if 0 < kept < len(data.train):
            info = {**data.info, "train_points_kept": kept, "train_points_of": len(data.train)}
            data = dataclasses.replace(data, train=data.train[:kept], info=info)
        return data

    def _build_data(self) -> DataSplit:
        seed = self.settings.seed
        if self.source == "Draw":
            strokes = parse_strokes(self.sketch)
            pts = points_from_strokes(strokes, self.n_points, np.random.default_rng(seed), noise=self._spread())
            return split_array(pts, "drawing", seed=seed, box=(-DRAW_BOX, DRAW_BOX, -DRAW_BOX, DRAW_BOX))
        if self.source == "Upload CSV":
            if not self.csv:
                raise DataError("upload a CSV file first")
            size = os.path.getsize(self.csv)
            with open(self.csv, "rb") as f:
                blob = f.read(size + 1)
            return split_array(parse_csv(blob), os.path.basename(self.csv), seed=seed,
                               standardise=bool(self.standardise))
        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset '{self.dataset}'")
        return make_split(self.dataset, self.n_points, self.clamped_noise(), seed)

    # --- sessions --------------------------------------------------------------------------------
    def signature(self) -> tuple:
        """Equal when a running session of the earlier spec can go on as this one: same data, model, seed
        and device, and the same config apart from the fields the model takes while training (live)."""
        live = {s["name"] for s in REGISTRY[self.model].Config.spec() if s["live"]}
        cfg = tuple(sorted((k, v) for k, v in self.config.items() if k not in live))
        return (self.data_signature(), self.model, cfg, self.settings.seed, self.device)

    # --- links -----------------------------------------------------------------------------------
    def to_query(self, tab: str) -> str:
        """The spec as a URL query (?tab=..&model=..&dataset=..&<config>..&lr=..), the inverse of from_query.
        A drawing travels as its strokes (draw=, exact) and an upload of at most MAX_LINK_POINTS points as the
        points themselves (pts=, quantised to 1/65,535 of their range: playground/linkdata.py); a larger upload
        is left out, and a note after the link says so."""
        q: dict[str, Any] = {"tab": tab, "model": self.model}
        left = ""
        if self.source == "Built-in":
            q.update(dataset=self.dataset, n=int(self.n_points), noise=round(self.clamped_noise(), 4))
        elif self.source == "Draw":
            try:
                q.update(draw=encode_strokes(parse_strokes(self.sketch)), n=int(self.n_points),
                         spread=round(self._spread(), 3))
            except (DataError, LinkDataError) as err:
                left = f"  (the drawing was left out: {err}; the link opens with the built-in dataset)"
        else:
            try:
                pts = self._upload_points()
                q.update(pts=encode_points(pts), std=int(bool(self.standardise)))
            except LinkDataError:
                left = f"  ({describe_left_out(len(pts))})"
            except (DataError, OSError) as err:
                left = f"  (the uploaded points were left out: {err}; the link opens with the built-in dataset)"
        if int(self.train_points):
            q["train"] = int(self.train_points)
        q.update(self.config)
        q.update(lr=f"{self.settings.lr:.3g}", batch=self.settings.batch, seed=self.settings.seed, device=self.device)
        return "?" + urlencode(q) + left

    def _upload_points(self) -> np.ndarray:
        if not self.csv:
            raise DataError("upload a CSV file first")
        with open(self.csv, "rb") as f:
            return parse_csv(f.read(os.path.getsize(self.csv) + 1))

    @classmethod
    def from_query(cls, q: Mapping[str, str], base: RunSpec, models: list[str],
                   usual: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[RunSpec, set[str], list[str]]:
        """A link's settings over `base` (the tab's defaults for the model the link names): returns the spec,
        the names the link set (model config by field name, else "data", "n", "device", "lr", "batch", "seed"),
        and notes on what it ignored (unknown or out of range) or read under an old name.

        `usual` gives, per model, training settings that suit it better than the tab's (used where the link
        says nothing of them)."""
        notes: list[str] = []
        bad: list[str] = []
        renamed: list[str] = []  # old setting names the link used, read as their new ones
        named: set[str] = set()
        model = q.get("model", base.model)
        if model not in models:
            bad.append(f"model={model}")
            model = base.model
        spec = dataclasses.replace(base, model=model, config=dict(base.config))
        if "draw" in q or "pts" in q:
            _data_from_link(q, spec, named, notes, bad)
        elif q.get("dataset") in DATASETS:
            ds = DATASETS[q["dataset"]]
            spec.source, spec.dataset, spec.noise = "Built-in", ds.name, ds.noise
            named.add("data")
            noise = _number(q.get("noise"), *ds.noise_range, float, bad, "noise")
            spec.noise = spec.noise if noise is None else noise
        elif "dataset" in q:
            bad.append(f"dataset={q['dataset']}")
        n = _number(q.get("n"), *N_POINTS, int, bad, "n")
        if n is not None:
            spec.n_points = n
            named.add("n")
        kept = _number(q.get("train"), *TRAIN_POINTS, int, bad, "train")
        if kept is not None:
            spec.train_points = kept
            named.add("train")
        if q.get("device") in DEVICES:
            spec.device = q["device"]
            named.add("device")
        cfg_cls = REGISTRY[model].Config
        known = {s["name"] for s in cfg_cls.spec()}
        for raw_name, raw in q.items():
            name, note = cfg_cls.canonical(raw_name)
            if name not in known:
                continue
            try:
                spec.config[name] = cfg_cls.coerce(name, raw)
            except ConfigError:
                bad.append(f"{raw_name}={raw}")
                continue
            named.add(name)
            if note:
                renamed.append(note)
        settings = dict(usual.get(model, {})) if usual else {}
        for name in ("lr", "batch", "seed"):
            if name in q:
                try:
                    settings[name] = TrainSettings.coerce(name, q[name])
                    named.add(name)
                except ConfigError:
                    bad.append(f"{name}={q[name]}")
        spec.settings = dataclasses.replace(base.settings, **settings)
        if bad:
            notes.append(f"Ignored (unknown or outside the safe range): {', '.join(bad)}.")
        if renamed:
            notes.append(f"Read under their new names: {', '.join(renamed)}.")
        return spec, named, notes


def _data_from_link(q: Mapping[str, str], spec: RunSpec, named: set[str], notes: list[str], bad: list[str]) -> None:
    """A drawing (draw=) or points (pts=) carried by a link into `spec`: the drawing as the pad's value, the points
    as a CSV file named by its content (LINK_FILES), which the Upload control then holds. A damaged value leaves the
    tab's own data and a note (never an error)."""
    try:
        if "draw" in q:
            strokes = decode_strokes(q["draw"])
            spec.source, spec.sketch = "Draw", json.dumps([s.tolist() for s in strokes])
            spread = _number(q.get("spread"), 0.0, 0.5, float, bad, "spread")
            spec.draw_noise = spec.draw_noise if spread is None else spread
            named.add("drawing")
        else:
            pts = decode_points(q["pts"])
            os.makedirs(LINK_FILES, exist_ok=True)
            path = os.path.join(LINK_FILES, hashlib.sha1(q["pts"].encode()).hexdigest()[:20] + ".csv")
            if os.path.exists(path):
                os.utime(path)  # opened again: kept another LINK_FILES_AGE
            else:
                prune_link_files()
                tmp = f"{path}.{os.getpid()}.tmp"
                np.savetxt(tmp, pts, delimiter=",", header="x,y", comments="", fmt="%.17g")
                os.replace(tmp, path)
            spec.source, spec.csv = "Upload CSV", path
            spec.standardise = q.get("std") == "1"
            named.add("points")
    except LinkDataError as err:
        what = "drawing" if "draw" in q else "points"
        notes.append(f"The {what} in the link could not be read ({err}): it opens with the tab's own data.")
    except OSError as err:
        notes.append(f"The points in the link could not be kept ({err.strerror or err}): it opens with the tab's "
                     "own data.")


def prune_link_files(max_age: float | None = None, now: float | None = None) -> int:
    """Remove the points of links not opened for `max_age` seconds (LINK_FILES_AGE: a day, longer than a visitor's
    idle run is kept, so no page still holds one). Called as a link brings new points; returns how many went."""
    import time

    max_age = LINK_FILES_AGE if max_age is None else max_age
    now = time.time() if now is None else now
    gone = 0
    try:
        names = os.listdir(LINK_FILES)
    except OSError:
        return 0
    for name in names:
        path = os.path.join(LINK_FILES, name)
        try:
            if now - os.path.getmtime(path) > max_age:
                os.remove(path)
                gone += 1
        except OSError:  # another process removed it first
            pass
    return gone


def _number(raw, lo, hi, kind, bad: list[str], name: str):
    if raw is None:
        return None
    try:
        v = kind(float(raw))
    except ValueError:
        bad.append(f"{name}={raw}")
        return None
    if not lo <= v <= hi:
        bad.append(f"{name}={raw}")
        return None
    return v


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read(MAX_FILE_DIGEST)).hexdigest()
