"""A run's history: its per-step loss terms and its per-frame held-out metrics, as curves."""

from __future__ import annotations

import warnings

import numpy as np


class History:
    """Per-step training terms (a growing numpy buffer) and per-frame evaluation metrics."""

    def __init__(self):
        self.step_terms: dict[str, np.ndarray] = {}
        self.n = 0
        self.evals: dict[str, tuple[list[int], list[float]]] = {}

    def log_step(self, terms: dict[str, float]) -> None:
        if self.n == 0 or any(k not in self.step_terms for k in terms):
            for k in terms:
                self.step_terms.setdefault(k, np.full(max(1024, self.n * 2), np.nan, np.float32))
        cap = len(next(iter(self.step_terms.values()))) if self.step_terms else 0
        if self.n >= cap:
            for k, buf in self.step_terms.items():
                grown = np.full(cap * 2, np.nan, np.float32)
                grown[:cap] = buf
                self.step_terms[k] = grown
        for k, v in terms.items():
            self.step_terms[k][self.n] = v
        self.n += 1

    def latest_terms(self) -> dict[str, float]:
        """The last step's terms (NaN for a term that step did not log)."""
        return {k: float(buf[self.n - 1]) for k, buf in self.step_terms.items()} if self.n else {}

    def truncate(self, n: int) -> None:
        """Forget every step after the first n (a rollback) and every evaluation after step n."""
        n = max(0, min(int(n), self.n))
        for buf in self.step_terms.values():
            buf[n:] = np.nan
        self.n = n
        for steps, vals in self.evals.values():
            keep = sum(1 for st in steps if st <= n)
            del steps[keep:], vals[keep:]

    def log_eval(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            if v is None:
                continue
            steps, vals = self.evals.setdefault(k, ([], []))
            steps.append(step)
            vals.append(float(v))

    def curves(self, max_points: int = 600) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """All series as (steps, values) with at most max_points each, decimated so that from one frame
        to the next a series changes only at its end (the browser is sent just the changed tail).

        Per-step terms: means of bins of b steps, b the smallest power of two that fits, at the bins'
        centre steps. A full bin never changes until b doubles; the last, partial bin is the tail.
        Per-frame evaluations: every b-th point (b again a power of two) and always the last one."""
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        n = self.n
        b = pow2_bin(n, max_points)
        full = n // b
        for k, buf in self.step_terms.items():
            v = buf[:n]
            if b == 1:
                out[k] = (np.arange(1, n + 1, dtype=np.float32), v.astype(np.float32))
                continue
            with warnings.catch_warnings():  # a term logged on some steps only (GANs' r1): a bin without
                warnings.simplefilter("ignore", RuntimeWarning)  # one is NaN, a gap in its curve
                vals = np.nanmean(v[: full * b].reshape(full, b), 1)
                steps = np.arange(full) * b + (b + 1) / 2
                if n > full * b:  # the partial last bin
                    vals = np.append(vals, np.nanmean(v[full * b:]))
                    steps = np.append(steps, (full * b + 1 + n) / 2)
            out[k] = (steps.astype(np.float32), vals.astype(np.float32))
        for k, (s, v) in self.evals.items():
            s_arr, v_arr = np.asarray(s, np.float32), np.asarray(v, np.float32)
            if len(s_arr) > max_points:
                last = len(s_arr) - 1
                idx = np.append(np.arange(0, last, pow2_bin(last, max_points - 1)), last)
                s_arr, v_arr = s_arr[idx], v_arr[idx]
            out[k] = (s_arr, v_arr)
        return out


def pow2_bin(n: int, max_points: int) -> int:
    """The smallest power of two b with ceil(n / b) <= max_points (max_points >= 1)."""
    b = 1
    while -(-n // b) > max_points:
        b *= 2
    return b
