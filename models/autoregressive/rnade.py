"""RNADE: a continuous autoregressive model of 2D data with mixture-of-Gaussians conditionals
(notes 3.1.3, "for continuous random variables").

    p(x1, x2) = p(x_first) p(x_second | x_first),
    p(x_first) = sum_k pi_k N(x_first; mu_k, s_k^2)                      (free parameters)
    p(x_second | x_first) = sum_k pi_k(h) N(x_second; mu_k(h), s_k(h)^2),  h = net(x_first)

The net maps x_first to the K mixing logits, K means and K log standard deviations (exponentiated so
the deviations stay positive, as the notes suggest). Mixing weights are learned, as in RNADE (Uria et
al. 2013), rather than fixed at 1/K. The model works in standardised coordinates and adds the
Standardizer's log-determinant, so log p(x) is in the data's own coordinates (nats per unit area).

References:
    Uria, Murray & Larochelle (2013), RNADE: the real-valued neural autoregressive density estimator.
    Bishop (1994), Mixture density networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..base import BaseConfig, Model2D, Standardizer, hp, register
from ..nets import mlp
from .discrete import SHOW_UNITS, by_coord, conn_dict, first_second, in_labels, order_field, var_names

LOG_SCALE_RANGE = (-6.0, 3.0)  # log standard deviations in standardised units, clamped for stability
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mog_log_prob(x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log sum_k softmax(logits)_k N(x; means_k, exp(log_scales_k)^2), broadcasting x (...,) against
    parameters (..., K)."""
    z = (x[..., None] - means) * torch.exp(-log_scales)
    comp = -0.5 * z * z - log_scales
    # log softmax(logits) folded into two logsumexps: 4x faster than log_softmax over a small last dim on CPU
    return torch.logsumexp(logits + comp, -1) - torch.logsumexp(logits, -1) - HALF_LOG_2PI


def mog_sample(logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of (n, K) mixture parameters: a component k ~ Cat(pi), then N(mu_k, s_k^2)."""
    k = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
    mu, ls = means.gather(1, k)[:, 0], log_scales.gather(1, k)[:, 0]
    return mu + torch.exp(ls) * torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)


@dataclass
class RNADEConfig(BaseConfig):
    renamed = {"layers": "depth"}  # its name before the families agreed on it

    K: int = hp(8, 1, 20, label="components K", help="Gaussians in each conditional's mixture")
    hidden: int = hp(64, 8, 256, step=8, label="hidden units", help="width of the net of x_first")
    depth: int = hp(2, 1, 4, label="hidden layers")
    order: str = order_field()


@register
class RNADE(Model2D):
    """RNADE (notes 3.1.3): p(x_first) and p(x_second | x_first) as mixtures of K Gaussians, the
    second's parameters a tanh MLP of x_first."""

    key = "rnade"
    in_compare = True  # a representative of its family in a comparison
    family = "autoregressive"
    title = "RNADE (continuous, mixture of Gaussians)"
    probe_kind = "rnade"
    density = "exact"
    Config = RNADEConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        K = self.cfg.K
        self.first, self.second = first_second(self.cfg.order)
        self.std = Standardizer()
        spread = torch.linspace(-1.5, 1.5, K) if K > 1 else torch.zeros(1)
        self.logits0 = nn.Parameter(torch.zeros(K))
        self.means0 = nn.Parameter(spread.clone())
        self.log_scales0 = nn.Parameter(torch.full((K,), math.log(0.5)))
        self.net = mlp(1, 3 * K, self.cfg.hidden, self.cfg.depth, act="tanh")
        with torch.no_grad():  # the conditional's components start spread out, not on top of each other
            out = self.net[-1]
            out.weight.mul_(0.1)
            out.bias.zero_()
            out.bias[K:2 * K] = spread
            out.bias[2 * K:] = math.log(0.5)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.std.fit(x)

    # --- the two factors, in standardised coordinates ----------------------------------------------
    def first_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.logits0, self.means0, self.log_scales0.clamp(*LOG_SCALE_RANGE)

    def cond_params(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture parameters (n, K) each of p(z_second | z_first = a) for standardised a (n,)."""
        logits, means, log_scales = self.net(a[:, None]).chunk(3, dim=1)
        return logits, means, log_scales.clamp(*LOG_SCALE_RANGE)

    def cond_params_shared(self, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """cond_params(a), running the net once per distinct value when there are few: a grid repeats each
        x_first along its line (100 values for 10,000 points). Only without autograd (torch.unique does not
        pass gradients to the points); the result is the same either way."""
        if not torch.is_grad_enabled() and a.shape[0] >= 2048:
            values, inverse = torch.unique(a, return_inverse=True)
            if 4 * values.shape[0] <= a.shape[0]:
                return tuple(p[inverse] for p in self.cond_params(values))
        return self.cond_params(a)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_first) + log p(x_second | x_first) (notes 3.2.4) + the standardisation's log-det."""
        z = self.std(x)
        a, b = z[:, self.first], z[:, self.second]
        return (mog_log_prob(a, *self.first_params()) + mog_log_prob(b, *self.cond_params_shared(a))
                + self.std.log_det())

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative average log-likelihood (notes 3.2.2), nats per point in data coordinates."""
        return {"loss": -self.log_prob(x).mean()}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Sequential sampling (notes 3.1.1): x_first from its mixture, then x_second given it."""
        logits, means, log_scales = (p.expand(n, -1) for p in self.first_params())
        g = self.rng("view", logits.device)
        a = mog_sample(logits, means, log_scales, g)
        b = mog_sample(*self.cond_params(a), generator=g)
        z = torch.stack([a, b], 1) if self.first == 0 else torch.stack([b, a], 1)
        return self.std.inverse(z)

    # --- what the views show -----------------------------------------------------------------------------
    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict:
        """The exact marginal of the first variable on the grid's axis (data coordinates). The conditional
        on a grid line x_first = a needs no extra net call: log p(x_second | a) = log p(a, x_second) - log p(a),
        the joint on that line (the session's grid density) minus this marginal."""
        res = int(round(math.sqrt(grid.shape[0])))
        axis = grid[:res, 0] if self.first == 0 else grid[::res, 1]
        sh, sc = self.std.shift[self.first], self.std.scale[self.first]
        log_marg = mog_log_prob((axis - sh) / sc, *self.first_params()) - torch.log(sc)
        return {"discrete": False, "first": self.first, "marg_x": axis.cpu().numpy(),
                "log_marg": log_marg.cpu().numpy(), "conn": self.connectivity()}

    def connectivity(self) -> dict:
        fn, sn = var_names(self.first)
        lins = [m for m in self.net if isinstance(m, nn.Linear)]
        n = min(self.cfg.hidden, SHOW_UNITS)
        w_in = np.zeros((n, 2), np.float32)
        w_in[:, self.first] = lins[0].weight[:n, 0].abs().cpu().numpy()
        edges = [w_in] + [lay.weight[:n, :n].abs().cpu().numpy() for lay in lins[1:-1]]
        w_out = np.zeros((2, n), np.float32)
        w_out[self.second] = lins[-1].weight[:, :n].abs().amax(0).cpu().numpy()
        edges.append(w_out)
        cols = ["input"] + [f"tanh layer {k + 1}, {n} of {self.cfg.hidden}" for k in range(self.cfg.depth)]
        return conn_dict(cols + ["mixtures: π μ σ"],
                         [["x₁", "x₂"]] + [[f"h{k + 1}" for k in range(n)]] * self.cfg.depth
                         + [by_coord(self.first, f"p({fn}): free parameters", f"p({sn} | {fn})")],
                         [in_labels(self.first)] + [np.ones(n)] * self.cfg.depth + [in_labels(self.first)],
                         edges, [2] + [self.cfg.hidden] * self.cfg.depth + [2])
