"""A run's frames: the density on a grid, samples, the family's probe, and held-out metrics (Snapshot).

The loop (run.py) decides when a frame is due; :class:`FrameMaker` builds it from the model and the data,
and keeps what frames reuse: the grids, the live grid's size, the last held-out metrics and their cost.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import metrics
from ..datasets import DataSplit
from ..snapshot import Snapshot, make_probe
from .devices import device_label

if TYPE_CHECKING:
    from .run import Session

EVAL_INTERVAL = 1.0  # held-out metrics (NLL, sample distance...) at most once a second while running
MAX_EVAL_SHARE = 0.02  # ... and taking at most this share of the time (frames have their own budget)
LIVE_GRID_SECONDS = 0.004  # the density grid of a frame while running costs about this much (see _fit_live_grid)
MIN_LIVE_RES, MAX_LIVE_RES = 40, 80  # 80 x 80 smoothed by the browser looks as 100 x 100, at 64% of the bytes


class FrameMaker:
    """Builds the Snapshots of one session (see Session.snapshot) and its held-out evaluations.

    Args:
        model: the session's model (frames read it, never train it).
        data: the split; train_x / test_x the same points as tensors on the run's device.
        grid_res: the density grid at rest is grid_res x grid_res over the data's box (while running: live_res).
        n_show: at most this many data points are drawn; n_samples model samples per frame.
    """

    def __init__(self, model, data: DataSplit, train_x: torch.Tensor, test_x: torch.Tensor, device: torch.device,
                 grid_res: int = 100, n_show: int = 1000, n_samples: int = 600):
        self.model, self.data, self.train_x, self.test_x, self.device = model, data, train_x, test_x, device
        self.grid_res, self.n_show, self.n_samples = int(grid_res), int(n_show), int(n_samples)
        xs, ys, pts = metrics.make_grid(data.box, self.grid_res)
        self.grid_x, self.grid_y = xs, ys
        self.grid = torch.as_tensor(pts, device=device)
        self.cell_area = metrics.cell_area(xs, ys)
        self._grids: dict[int, tuple] = {self.grid_res: (xs, ys, self.grid, self.cell_area)}
        # the grid of frames while running (see _fit_live_grid): a costly density (density_refresh) starts small
        self.live_res = min(self.grid_res, MIN_LIVE_RES) if model.density_refresh else self.grid_res
        self._test_sub = data.test[:500]
        self.data_nll = (float(-np.mean(data.log_prob(data.test))) if data.log_prob is not None else None)
        self.evals: dict[str, float] = {}  # the last held-out metrics (see snapshot)
        self.evaluated = False  # whether the last snapshot evaluated them afresh
        self._next_eval = -math.inf
        self.last_eval_cpu = 0.0
        self.last_snapshot_cpu = 0.0
        self._last_density: tuple | None = None  # (when, step, res, log-density, mass): see density_refresh

    def forget_evaluations(self) -> None:
        self.evals = {}

    # --- held-out metrics ----------------------------------------------------------------------
    def _log_density(self, x: torch.Tensor, log_z: float | None) -> torch.Tensor:
        lp = metrics.batched(self.model.log_prob, x)
        return lp - log_z if log_z is not None else lp

    def _family_metrics(self, test: torch.Tensor, samples) -> dict[str, float]:
        """The model's own metrics plus, on mixture datasets, mode coverage of its samples."""
        out = {k: float(v) for k, v in self.model.metrics(test).items()}
        if self.data.modes is not None and self.data.mode_std:
            s = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
            cov = metrics.mode_coverage(s, self.data.modes, self.data.mode_std)
            out["modes_covered"] = float(cov["modes_covered"])
            out["high_quality"] = cov["high_quality"]
        return out

    def evaluate(self, history, test: torch.Tensor | None = None, n_samples: int = 2000) -> dict[str, float]:
        """Final metrics: train/test NLL (nats, data coordinates) where the family has a density,
        the sample distances to held-out data, and the latest loss terms (of `history`)."""
        test = self.test_x if test is None else test
        out: dict[str, float] = {}
        log_z = None
        if self.model.density == "unnormalized":
            lz = metrics.batched(self.model.log_prob, self.grid)
            log_z = metrics.grid_log_normalizer(lz, self.cell_area)
            out["log_z_grid"] = log_z
        if self.model.density != "none":
            out["train_nll"] = metrics.mean_nll(self._log_density(self.train_x[:20000], log_z))
            out["test_nll"] = metrics.mean_nll(self._log_density(test, log_z))
        samples = self.model.sample(n_samples).detach()
        out["mmd"] = metrics.mmd2(samples, test)
        out["energy_distance"] = metrics.energy_distance(samples, test)
        out.update(self._family_metrics(test, samples))
        out.update(history.latest_terms())
        if self.data_nll is not None and test is self.test_x:
            out["data_nll"] = self.data_nll
        return out

    def frame_metrics(self, samples: np.ndarray, log_z: float | None, live: bool = False) -> dict[str, float]:
        """The held-out metrics a frame's curves and status line show: train / held-out NLL where the family
        has a density (an EBM's normalised on the full grid), the sample distance, the family's own. A live
        frame's NLLs use at most the model's live_nll_points points."""
        m = self.model
        out: dict[str, float] = {}
        if m.density != "none":
            if m.density == "unnormalized":
                if log_z is None:
                    log_z = metrics.grid_log_normalizer(metrics.batched(m.log_prob, self.grid), self.cell_area)
                out["log_z_grid"] = log_z
            n = m.live_nll_points if live else 5000
            out["train_nll"] = metrics.mean_nll(self._log_density(self.train_x[:min(2000, n)], log_z))
            out["test_nll"] = metrics.mean_nll(self._log_density(self.test_x[:n], log_z))
        out["energy_distance"] = metrics.energy_distance(samples, self._test_sub, max_n=500)
        out.update(self._family_metrics(self.test_x[:2000], samples))
        return out

    # --- frames --------------------------------------------------------------------------------
    def _grid(self, res: int) -> tuple:
        """(xs, ys, points, cell area) of the res x res grid over the data's box, made once."""
        if res not in self._grids:
            xs, ys, pts = metrics.make_grid(self.data.box, res)
            self._grids[res] = (xs, ys, torch.as_tensor(pts, device=self.device), metrics.cell_area(xs, ys))
        return self._grids[res]

    def _fit_live_grid(self, res: int, seconds: float) -> None:
        """Frames while running use a grid whose density costs about LIVE_GRID_SECONDS (a flow's density on
        100 x 100 points costs more than a training step ten times over): 80 x 80 for cheap models, down to
        40 x 40 for expensive ones (the browser smooths it). Frames at rest use the full grid_res."""
        per_point = seconds / (res * res)
        fit = int(math.sqrt(LIVE_GRID_SECONDS / max(per_point, 1e-12)) // 8 * 8)
        self.live_res = int(min(self.grid_res, MAX_LIVE_RES, max(MIN_LIVE_RES, fit)))

    def _repeat_density(self, snap: Snapshot, res: int) -> bool:
        """While running, a model with a density_refresh repeats its last density grid (same resolution) until that
        many seconds have passed; `density_step` in the frame says which step it shows."""
        last, m = self._last_density, self.model
        if (last is None or snap.status != "running" or not m.density_refresh or last[2] != res
                or time.perf_counter() - last[0] >= m.density_refresh):
            return False
        xs, ys, _, _ = self._grid(res)
        snap.grid_x, snap.grid_y, snap.log_density, snap.grid_mass = xs, ys, last[3], last[4]
        snap.latest["density_step"] = float(last[1])
        return True

    def _draw(self, snap: Snapshot, res: int, frame: dict) -> None:
        """A frame's density on the res x res grid (an EBM's log Z into `frame`), samples and probe."""
        m = self.model
        xs, ys, grid, area = self._grid(res)
        if m.density != "none" and self._repeat_density(snap, res):
            pass
        elif m.density != "none":
            with torch.inference_mode():  # a per-frame cost that does not grow with the grid (an EBM's log Z
                m.grid_log_prob(grid[:1])  # on its own grid, cached until the parameters change) is paid first,
            t_grid = time.perf_counter()  # outside the timing that sizes the grid
            lp = metrics.batched(m.grid_log_prob, grid)
            self._fit_live_grid(res, time.perf_counter() - t_grid)
            if m.density == "unnormalized":
                log_z = metrics.grid_log_normalizer(lp, area)
                lp = lp - log_z
                frame["log_z_grid"] = log_z
            grid_lp = lp.double().cpu().numpy().reshape(res, res)
            snap.grid_x, snap.grid_y = xs, ys
            snap.log_density = grid_lp.astype(np.float32)
            snap.grid_mass = metrics.grid_mass(grid_lp, area)
            self._last_density = (time.perf_counter(), snap.step, res, snap.log_density, snap.grid_mass)
        labeled = m.sample_labeled(self.n_samples)
        if labeled is not None:
            s, lab = labeled
            snap.sample_labels = lab.detach().cpu().numpy().astype(np.int32)
        else:
            s = m.sample(self.n_samples)
        snap.samples = s.detach().float().cpu().numpy()
        m.advance_display()  # the one place a frame moves what the model keeps for show (an EBM's display chains)
        snap.probe = make_probe(m.probe_kind, m.probe(grid, self.train_x[: self.n_show]))

    def snapshot(self, sess: Session, evaluate: bool | None = None) -> Snapshot:
        """Build a frame of `sess`: density on the grid, samples and the family's probe record; and, at most
        every EVAL_INTERVAL seconds while running (always when not running, or with evaluate=True), the held-out
        metrics that the curves and the status line show (their CPU time: last_eval_cpu). A frame in between
        repeats the last ones: they would cost as much as the rest of the frame and barely move in a
        fraction of a second."""
        m = self.model
        now, cpu0 = time.perf_counter(), time.thread_time()
        running = sess.status == "running"
        if evaluate is None:
            evaluate = not running or not self.evals or now >= self._next_eval
        snap = Snapshot(step=sess.step_count, status=sess.status, message=sess.message,
                        model_key=m.key, family=m.family, density=m.density, box=self.data.box,
                        train=self.data.train[: self.n_show], test=self.data.test[: self.n_show],
                        data_nll=self.data_nll, steps_per_sec=sess.steps_per_sec,
                        elapsed=sess.train_time, device=device_label(self.device),
                        dataset=self.data.name, event=sess.event)
        frame: dict[str, float] = {}
        res = self.live_res if running else self.grid_res
        m.frame_is_live = running  # the density and probe of a live frame may be cheaper ...
        try:
            self._draw(snap, res, frame)
        finally:
            m.frame_is_live = False  # ... held-out metrics never are
        log_z = frame.get("log_z_grid")
        self.last_eval_cpu = 0.0
        self.evaluated = bool(evaluate)
        history = sess.history
        if evaluate:
            cpu = time.thread_time()
            self.evals = self.frame_metrics(snap.samples, log_z if res == self.grid_res else None, running)
            frame.pop("log_z_grid", None)
            if sess.step_count > 0 or not history.evals:
                history.log_eval(sess.step_count, self.evals)
            sess.note_evaluation(self.evals)
            self.last_eval_cpu = time.thread_time() - cpu
            self._next_eval = now + max(EVAL_INTERVAL, self.last_eval_cpu / max(MAX_EVAL_SHARE, m.eval_share))
        snap.curves = history.curves()
        snap.latest = {**self.evals, **frame, **history.latest_terms(), **snap.latest}
        self.last_snapshot_cpu = time.thread_time() - cpu0 - self.last_eval_cpu  # the frame's own part
        return snap
