"""The EBM tab's sampler sandbox without its widgets: which target the chains run on, the chains, and
their statistics (notes 7.3: Langevin, MALA, Metropolis–Hastings on a fixed density).

A target is an analytic density (playground/densities.py) or a frozen copy of the model a visitor trained
(Session.frozen_model: the run's last good parameters, taken by the session, not copied from under it).
"""

from __future__ import annotations

from typing import Any

from models.samplers import MALA_MIN_NOISE, METHODS, SamplerSandbox

from . import metrics
from .datasets import DATASETS
from .densities import dataset_log_prob

__all__ = ["MALA_MIN_NOISE", "METHODS", "SandboxRun"]


class SandboxRun:
    """One visitor's sandbox: the chains (`box`, a SamplerSandbox), what they were built for (`signature`),
    the sampler settings they run with now, and the curves of their statistics (`history`)."""

    def __init__(self):
        self.box: SamplerSandbox | None = None
        self.signature: tuple | None = None
        self.settings: dict[str, Any] = {}
        self.history: dict[str, list] = {}

    def reset(self) -> None:
        self.box, self.signature, self.history = None, None, {}

    @staticmethod
    def target(name: str, session) -> tuple:
        """(log_prob, box, title) of a sandbox target; "learned" is a frozen copy of the session's model."""
        if name == "learned":
            if session is None or session.model.family != "ebm":
                raise ValueError("train an energy-based model above first (then pick the learned energy)")
            model, step = session.frozen_model(), session.checkpoints.newest_step
            return model.log_prob, session.data.box, f"learned energy ({model.title}, step {step})"
        if name not in DATASETS:
            raise KeyError(f"unknown target '{name}'")
        ds = DATASETS[name]
        b = ds.box
        return dataset_log_prob(name, ds.noise), (-b, b, -b, b), ds.title

    def prepare(self, target: str, session, session_signature, method: str, step_size: float,
                proposal_std: float, noise_scale: float, steps: int) -> str | None:
        """Settings and chains for this target (the chains are kept when only the sampler's settings
        changed); a reason when the target cannot be run."""
        self.settings = dict(method=method, step_size=float(step_size), proposal_std=float(proposal_std),
                             noise_scale=float(noise_scale), steps=int(steps))
        sig = (target, (session_signature, session.step_count) if target == "learned" and session else None)
        if self.box is None or self.signature != sig:
            try:
                log_prob, box, title = self.target(target, session)
            except (ValueError, KeyError, RuntimeError) as err:  # RuntimeError: the run's worker could not answer
                return str(err)
            if log_prob is None:
                return f"{target} has no density in closed form"
            self.box, self.signature, self.history = SamplerSandbox(log_prob, box, title), sig, {}
        return None

    def advance(self) -> dict[str, Any]:
        """`steps` more steps of every chain with the current settings; the chains' state (plain numpy, see
        SamplerSandbox.state) with the energy distance to exact samples, its statistics logged."""
        cfg, box = self.settings, self.box
        box.configure(cfg["method"], cfg["step_size"], cfg["proposal_std"], cfg["noise_scale"])
        box.advance(cfg["steps"])
        s = box.state()
        s["ed"] = metrics.energy_distance(s["x"], s["reference"], max_n=500)
        for k, v in (("step", s["steps"]), ("accept", s["accept"]), ("rhat", s["rhat"]), ("ed", s["ed"])):
            self.history.setdefault(k, []).append(float(v))
        return s
