"""f-GAN (notes 6.7, Nowozin, Cseke & Tomioka 2016): a GAN for any f-divergence.

D_f(p || q) = E_q[f(p/q)] for a convex f with f(1) = 0. With the Fenchel conjugate
f*(t) = sup_u (u t - f(u)), every function T gives a lower bound (notes 6.7)

    D_f(p || q) >= E_p[T(x)] - E_q[f*(T(x))],

tight at T*(x) = f'(p(x)/q(x)). The variational function is T(x) = g_f(v(x)): the network's raw
output v passed through an output activation g_f that keeps T inside the domain of f*
(Nowozin et al. 2016, table 2). T maximises the bound; the generator minimises it ("saddle"),
or, as Nowozin et al. do in practice (section 3.2), maximises E_q[T(G(z))] ("non-saturating").

Here p is the data and q the generator, so fgan_kl minimises KL(data || model) (mode covering) and
fgan_rkl KL(model || data) (mode seeking). Nowozin's Jensen-Shannon f is 2 JSD: fgan_js reports
half its bound, a lower bound on JSD in nats like the classic GAN's.

References:
    Nowozin, Cseke & Tomioka (2016), f-GAN: training generative neural samplers using variational
    divergence minimization (table 2: f, f*, g_f).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..base import hp, register
from .gan import GAN, R1Config

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class FDivergence:
    """One row of Nowozin et al.'s table 2.

    Attributes:
        f: the generator f(u) of D_f, for u in its domain ("positive": u > 0, "real": all u).
        activation: g_f, raw output v -> T in the domain of f*.
        conjugate: f*(t).
        conjugate_of_v: f*(g_f(v)), written so that it stays finite for every v.
        t_equal: f'(1), the value of the optimal T where p = q.
        report_scale: the divergence reported is report_scale times the bound.
    """

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    activation: Callable[[torch.Tensor], torch.Tensor]
    conjugate: Callable[[torch.Tensor], torch.Tensor]
    conjugate_of_v: Callable[[torch.Tensor], torch.Tensor]
    t_equal: float
    u_domain: str = "positive"
    report_scale: float = 1.0


DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "KL(p‖q)", f=lambda u: u * torch.log(u), activation=lambda v: v,
        conjugate=lambda t: torch.exp(t - 1), conjugate_of_v=lambda v: torch.exp(v - 1), t_equal=1.0),
    "rkl": FDivergence(
        "KL(q‖p)", f=lambda u: -torch.log(u), activation=lambda v: -torch.exp(-v),
        conjugate=lambda t: -1 - torch.log(-t), conjugate_of_v=lambda v: v - 1, t_equal=-1.0),
    "js": FDivergence(
        "2·JSD(p, q)", f=lambda u: u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2),
        activation=lambda v: LOG2 - F.softplus(-v),
        conjugate=lambda t: -torch.log(2 - torch.exp(t)),
        conjugate_of_v=lambda v: F.softplus(v) - LOG2, t_equal=0.0, report_scale=0.5),
    "pearson": FDivergence(
        "Pearson χ²(p‖q)", f=lambda u: (u - 1) ** 2, activation=lambda v: v,
        conjugate=lambda t: t * t / 4 + t, conjugate_of_v=lambda v: v * v / 4 + v, t_equal=0.0,
        u_domain="real"),
    "hellinger": FDivergence(
        "squared Hellinger", f=lambda u: (torch.sqrt(u) - 1) ** 2, activation=lambda v: 1 - torch.exp(-v),
        conjugate=lambda t: t / (1 - t), conjugate_of_v=lambda v: torch.exp(v) - 1, t_equal=0.0),
}


G_OBJECTIVE_HELP = "saddle: G minimises the bound itself; non-saturating: G maximises E_q[T] (Nowozin §3.2)"


@dataclass
class FGANConfig(R1Config):
    g_objective: str = hp("non-saturating", choices=("non-saturating", "saddle"), label="generator loss",
                          help=G_OBJECTIVE_HELP)


@dataclass
class FGANSaddleConfig(R1Config):
    """KL and reverse KL default to the saddle loss: the non-saturating one is -E_q[exp(-v)] for
    reverse KL (it explodes where D is sure) and made KL oscillate between collapsed states here."""

    g_objective: str = hp("saddle", choices=("saddle", "non-saturating"), label="generator loss",
                          help=G_OBJECTIVE_HELP)


class FGAN(GAN):
    """The f-GAN game min_G max_T E_p[T] - E_q[f*(T)] of notes 6.7 for one f-divergence."""

    Config = FGANConfig
    div: FDivergence
    surface_label = "T(x)"
    equilibrium = (0.0, None)  # at p = q the bound is 0 for the best T: D's loss -bound is 0

    @property
    def surface_mid(self) -> float:
        return self.div.t_equal

    def bound(self, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
        """E_p[T] - E_q[f*(T)] <= D_f(p || q) (notes 6.7)."""
        return self.div.activation(v_real).mean() - self.div.conjugate_of_v(v_fake).mean()

    def d_loss(self, v_real, v_fake):
        return -self.bound(v_real, v_fake)

    def g_loss_per_sample(self, v_fake):
        if self.cfg.g_objective == "saddle":
            return -self.div.conjugate_of_v(v_fake)
        return -self.div.activation(v_fake)

    def surface(self, v):
        return self.div.activation(v)

    def divergence(self, v_real, v_fake):
        return self.div.report_scale * self.bound(v_real, v_fake)


def _fgan(key: str, div: str, title: str, bounds: str, config=FGANConfig) -> type[FGAN]:
    cls = type(f"FGAN_{div}", (FGAN,), {"key": key, "title": title, "div": DIVERGENCES[div], "Config": config,
                                        "divergence_label": f"lower bound on {bounds}",
                                        "__doc__": f"f-GAN (notes 6.7) minimising {DIVERGENCES[div].name}."})
    return register(cls)


FGANKL = _fgan("fgan_kl", "kl", "f-GAN — KL (data ‖ model)", "KL(data‖model)", FGANSaddleConfig)
FGANReverseKL = _fgan("fgan_rkl", "rkl", "f-GAN — reverse KL (model ‖ data)", "KL(model‖data)", FGANSaddleConfig)
FGANJS = _fgan("fgan_js", "js", "f-GAN — Jensen–Shannon", "JSD")
FGANPearson = _fgan("fgan_pearson", "pearson", "f-GAN — Pearson χ²", "χ²(data‖model)")
FGANHellinger = _fgan("fgan_hellinger", "hellinger", "f-GAN — squared Hellinger", "squared Hellinger")
