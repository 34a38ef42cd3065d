"""Teacher -> student distillation of a flow, as in Parallel WaveNet (notes 5.4.6).

A MAF teacher (density in one pass, notes 5.4.4) is first fit to the data by maximum likelihood.
Then an IAF student (sampling in one pass, notes 5.4.5) is fit to the frozen teacher by
minimising

    KL(s ‖ t) = E_{x~s}[log s(x) - log t(x)],

using only the student's own samples: x = f_s(z) gives log s(x) = log N(z) - log|det ∂x/∂z| from
the same pass (no sequential inverse), and the teacher scores x in one pass. Neither needs the
slow direction of either flow. At test time the student samples fast.

References:
    van den Oord et al. (2018), Parallel WaveNet: fast high-fidelity speech synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..base import BaseConfig, Model2D, Standardizer, clip_grad_norm, hp, make_adam, register
from .layers import IAFLayer, MAFLayer
from .model import LATENT_POINTS, MAX_GRAD_NORM, FlowStack, normal_log_prob, target_metrics, warp_probe

STUDENT_MAX_GRAD_NORM = 5.0


@dataclass
class StudentConfig(BaseConfig):
    layers: int = hp(6, 1, 16, label="layers", help="MADE layers of the teacher (MAF) and of the student (IAF)")
    hidden: int = hp(64, 8, 256, step=8, label="hidden width", help="units per hidden layer of each MADE")
    depth: int = hp(2, 1, 4, label="hidden layers", help="hidden layers of each MADE")
    teacher_steps: int = hp(1500, 50, 50000, step=50, label="teacher steps",
                            help="steps of maximum likelihood for the MAF teacher; then the IAF student "
                                 "learns from the frozen teacher, by KL(student ‖ teacher) on its own samples")


@register
class TeacherStudent(Model2D):
    """MAF teacher fit to data, then IAF student fit to the teacher by KL(s ‖ t) (notes 5.4.6).
    log_prob and sample are the student's; the teacher's density is in probe() and metrics()."""

    key = "iaf_student"
    menu_rank = 5
    family = "flow"
    title = "MAF teacher → IAF student (Parallel WaveNet)"
    probe_kind = "student"
    density = "exact"
    Config = StudentConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        c = self.cfg
        self.teacher = FlowStack([MAFLayer(2, c.hidden, c.depth, reverse=bool(i % 2)) for i in range(c.layers)])
        self.student = FlowStack([IAFLayer(2, c.hidden, c.depth, reverse=bool(i % 2)) for i in range(c.layers)])
        self.standardizer = Standardizer()  # shared: the student lives in the teacher's coordinates
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._teacher_grid = None  # the frozen teacher's density grid, drawn once in phase 2

    # --- phases ---------------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return "teacher" if int(self.steps_done) < self.cfg.teacher_steps else "student"

    @property
    def grad_exempt(self) -> tuple[str, ...]:
        """Each phase trains one flow and freezes the other (the contract test reads this)."""
        return ("student.",) if self.phase == "teacher" else ("teacher.",)

    def active(self) -> FlowStack:
        return self.teacher if self.phase == "teacher" else self.student

    # --- densities in data coordinates --------------------------------------------------------------
    def _log_prob(self, flow: FlowStack, x: torch.Tensor) -> torch.Tensor:
        z, log_det = flow.inverse(self.standardizer(x))
        return normal_log_prob(z) + log_det + self.standardizer.log_det()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The student's density (its inverse is sequential: two MADE passes per layer in 2D)."""
        return self._log_prob(self.student, x)

    def teacher_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._log_prob(self.teacher, x)

    def sample_with_log_prob(self, n: int, purpose: str = "view") -> tuple[torch.Tensor, torch.Tensor]:
        """Student samples and log s(x), from one forward pass (z from the run's `purpose` generator)."""
        dev = self.steps_done.device
        z = torch.randn(n, 2, device=dev, generator=self.rng(purpose, dev))
        u, log_det = self.student(z)
        return self.standardizer.inverse(u), normal_log_prob(z) - log_det + self.standardizer.log_det()

    def sample(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.sample_with_log_prob(n)[0]

    # --- training ---------------------------------------------------------------------------------------
    def init_from_data(self, x: torch.Tensor) -> None:
        self.standardizer.fit(x)

    def configure_optimizers(self, settings):
        return {"teacher": make_adam(self.teacher.parameters(), settings.lr),
                "student": make_adam(self.student.parameters(), settings.lr)}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Phase 1: the teacher's NLL on the data batch. Phase 2: KL(s ‖ t) from as many student
        samples as the batch has points (the data are not used)."""
        if self.phase == "teacher":
            return {"loss": -self.teacher_log_prob(x).mean()}
        x_s, log_s = self.sample_with_log_prob(x.shape[0], "train")
        return {"loss": (log_s - self.teacher_log_prob(x_s)).mean()}

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        phase = self.phase
        self.teacher.requires_grad_(phase == "teacher")  # phase 2: no gradients for the frozen teacher
        opt = optimizers[phase]
        opt.zero_grad(set_to_none=True)
        terms = self.loss(x)
        terms["loss"].backward()
        # the teacher clips as every flow fit to data does (models/flows/model.py, FlowModel); the student tighter: the
        # teacher's log-density is steep far from the data, so its steps are kept bounded
        clip_grad_norm(opt, STUDENT_MAX_GRAD_NORM if phase == "student" else MAX_GRAD_NORM)
        opt.step()
        self.steps_done += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    # --- what the views show ------------------------------------------------------------------------------
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """The teacher's held-out NLL and KL(s ‖ t) from 2,048 student samples."""
        with torch.no_grad():
            out = {"teacher_test_nll": float(-self.teacher_log_prob(x_test).mean())}
        kl = target_metrics(self, self.teacher_log_prob)
        out["kl_student_teacher"] = kl["kl_q_p"]
        return out

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        flow = self.active()
        out = warp_probe(flow, self.standardizer)
        out["latent"] = flow.inverse(self.standardizer(points[:LATENT_POINTS]))[0].cpu().numpy()
        out.update(self._teacher_density(grid))
        out["teacher_steps"] = np.array(self.cfg.teacher_steps, np.int32)
        out["phase"] = np.array(self.phase)
        return out

    def _teacher_density(self, grid: torch.Tensor) -> dict[str, np.ndarray]:
        """The teacher's density on every other node of the session's grid (a quarter of the cost),
        computed once when it is frozen."""
        if self.phase == "student" and self._teacher_grid is not None:
            return self._teacher_grid
        res = int(round(grid.shape[0] ** 0.5))
        sub = grid.reshape(res, res, 2)[::2, ::2] if res * res == grid.shape[0] else grid[None]
        lp = self.teacher_log_prob(sub.reshape(-1, 2)).reshape(sub.shape[:2])
        out = {"teacher_log_density": lp.float().cpu().numpy(), "teacher_x": sub[0, :, 0].cpu().numpy(),
               "teacher_y": sub[:, 0, 1].cpu().numpy()}
        self._teacher_grid = out if self.phase == "student" else None
        return out
