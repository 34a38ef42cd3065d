"""MintNet in two dimensions (notes 5.4.7; Song, Meng & Ermon 2019).

MintNet builds invertible networks from masked layers whose Jacobian is triangular with a positive diagonal:
then log|det J| is the sum of the logs of the diagonal, computed in the same pass as the output, and each output
coordinate is a strictly increasing function of its own input given the ones before it, so the map is a
bijection. In images the masks are masked convolutions; in the plane they are 2x2 lower-triangular masks.

One layer, in the data -> latent direction x -> z (the density pass), with (a, b) the layer's two coordinates in
its order (x₁ first, or x₂ first in every other layer) and H hidden units in two groups of H/2:

    h_a = tanh(w_a⁺ a + c_a)                     group a sees a only         (mask: lower triangular)
    h_b = tanh(w_ba a + w_b⁺ b + c_b)             group b sees a and b
    z_a = e^{s_a} a + v_a⁺ · h_a + d_a
    z_b = e^{s_b} b + v_ba · h_a + v_b⁺ · h_b + d_b

with every weight on the diagonal (marked ⁺) positive (softplus of a free parameter) and the strictly lower
ones (w_ba, v_ba) free. Then ∂z_a/∂b = 0 and the diagonal is

    ∂z_a/∂a = e^{s_a} + Σ v_a⁺ w_a⁺ (1 − h_a²) > 0,    ∂z_b/∂b = e^{s_b} + Σ v_b⁺ w_b⁺ (1 − h_b²) > 0,

log|det J| = log ∂z_a/∂a + log ∂z_b/∂b. The skip term e^{s} keeps each slope ≥ e^{s} and the tanh part is
bounded, so each coordinate map is onto the line (affine tails).

The inverse has no closed form (the paper inverts with a locally convergent fixed-point iteration that updates
every coordinate in parallel, for images). In 2D the Jacobian is triangular, so here it is solved one coordinate
at a time: a from z_a = g_a(a) alone, then b from z_b = g_b(a, b), each a strictly increasing scalar equation
whose root the bounded tanh part brackets (|tanh| < 1: a lies within Σ v_a⁺ e^{-s_a} of (z_a − d_a) e^{-s_a}, and b
likewise given a), found by Newton steps kept inside the bracket (gaussianization.bracketed_newton), in float64,
to a residual of 1e-9: 3 iterations per coordinate here, at most 5 on layers with heavily perturbed weights. The
iterations used are the metric `inverse_iterations`. Sampling needs this direction; it carries no gradient, so
the flow is fit to data only.

References:
    Song, Meng & Ermon (2019), MintNet: building invertible neural networks with masked convolutions (NeurIPS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..base import BaseConfig, hp, register
from .gaussianization import bracketed_newton, max_iterations, solver_metrics
from .layers import FlowLayer
from .model import AVERAGE_HELP, FlowModel


class MintLayer(FlowLayer):
    """A 2D MintNet layer: lower-triangular masked weights with a positive diagonal (see the module docstring).
    :meth:`inverse` is the data -> latent map (closed form: maximum likelihood's pass); :meth:`forward` the
    latent -> data one, solved coordinate by coordinate (`last_iterations`: the iterations of its last call,
    the larger of the two coordinates')."""

    name = "MintNet layer"

    def __init__(self, hidden: int = 32, reverse: bool = False):
        super().__init__()
        h = max(1, int(hidden) // 2)
        self.order = (1, 0) if reverse else (0, 1)
        # a start near the identity, warped a little: unit skips, and the tanh units' output weights summing to
        # about 0.3 (v⁺ through softplus), so that eight layers do not compound into a huge initial map
        v_pos = math.log(math.expm1(0.3 / h))  # softplus(v_pos) = 0.3 / h
        self.log_skip = nn.Parameter(torch.zeros(2))  # s_a, s_b
        self.w_a = nn.Parameter(torch.randn(h))  # w_a⁺ (through softplus)
        self.w_ba = nn.Parameter(torch.randn(h))
        self.w_b = nn.Parameter(torch.randn(h))  # w_b⁺
        self.c_a = nn.Parameter(torch.rand(h) * 4 - 2)
        self.c_b = nn.Parameter(torch.rand(h) * 4 - 2)
        self.v_a = nn.Parameter(torch.randn(h) * 0.5 + v_pos)  # v_a⁺
        self.v_ba = nn.Parameter(torch.randn(h) * (0.3 / h))
        self.v_b = nn.Parameter(torch.randn(h) * 0.5 + v_pos)  # v_b⁺
        self.d = nn.Parameter(torch.zeros(2))
        self.last_iterations = 0

    def _weights(self):
        sp = F.softplus
        return sp(self.w_a), self.w_ba, sp(self.w_b), sp(self.v_a), self.v_ba, sp(self.v_b)

    def _coordinate_a(self, a, w_a, v_a):
        """z_a and ∂z_a/∂a for the column a, (n, 1) each."""
        h = torch.tanh(a * w_a + self.c_a)
        return (torch.exp(self.log_skip[0]) * a + h @ v_a[:, None] + self.d[0],
                torch.exp(self.log_skip[0]) + (1 - h * h) @ (v_a * w_a)[:, None], h)

    def _coordinate_b(self, a, b, h_a, w_ba, w_b, v_ba, v_b):
        """z_b and ∂z_b/∂b given a (and h_a), (n, 1) each."""
        h = torch.tanh(a * w_ba + b * w_b + self.c_b)
        return (torch.exp(self.log_skip[1]) * b + h_a @ v_ba[:, None] + h @ v_b[:, None] + self.d[1],
                torch.exp(self.log_skip[1]) + (1 - h * h) @ (v_b * w_b)[:, None])

    def inverse(self, x):
        i, j = self.order
        w_a, w_ba, w_b, v_a, v_ba, v_b = self._weights()
        a, b = x[:, i:i + 1], x[:, j:j + 1]
        z_a, da, h_a = self._coordinate_a(a, w_a, v_a)
        z_b, db = self._coordinate_b(a, b, h_a, w_ba, w_b, v_ba, v_b)
        z = torch.cat([z_a, z_b] if i == 0 else [z_b, z_a], 1)
        return z, (torch.log(da) + torch.log(db))[:, 0]

    @torch.no_grad()
    def solve(self, z: torch.Tensor) -> tuple[torch.Tensor, int]:
        """x with inverse(x)[0] = z, in float64: a first (its equation involves a only), then b given a."""
        i, j = self.order
        layer = _double(self)
        w_a, w_ba, w_b, v_a, v_ba, v_b = layer._weights()
        zd = z.double()
        z_a, z_b = zd[:, i:i + 1], zd[:, j:j + 1]
        skip = torch.exp(layer.log_skip)
        # z_a = e^{s_a} a + v_a⁺·h + d_a with |h| < 1 elementwise: a lies within Σv_a⁺ e^{-s_a} of (z_a − d_a) e^{-s_a}
        mid, half = (z_a - layer.d[0]) / skip[0], v_a.sum() / skip[0]

        def residual_a(a):
            out, slope, _ = layer._coordinate_a(a, w_a, v_a)
            return out - z_a, slope

        a, it_a = bracketed_newton(residual_a, mid - half, mid + half)
        h_a = torch.tanh(a * w_a + layer.c_a)
        mid = (z_b - layer.d[1] - h_a @ v_ba[:, None]) / skip[1]
        half = v_b.sum() / skip[1]

        def residual_b(b):
            out, slope = layer._coordinate_b(a, b, h_a, w_ba, w_b, v_ba, v_b)
            return out - z_b, slope

        b, it_b = bracketed_newton(residual_b, mid - half, mid + half)
        return torch.cat([a, b] if i == 0 else [b, a], 1), max(it_a, it_b)

    def forward(self, z):
        x, self.last_iterations = self.solve(z)
        x = x.to(z.dtype)
        with torch.no_grad():
            _, log_det = self.inverse(x)
        return x, -log_det

    def describe(self) -> str:
        return f"{self.name} ({'x₁' if self.order[0] == 0 else 'x₂'} first)"


def _double(layer: MintLayer) -> MintLayer:
    """A float64 copy of the layer (no gradient), for the root search."""
    twin = MintLayer.__new__(MintLayer)
    nn.Module.__init__(twin)
    twin.order = layer.order
    for name, p in layer.named_parameters():
        setattr(twin, name, p.detach().double())
    return twin


@dataclass
class MintNetConfig(BaseConfig):
    layers: int = hp(8, 1, 32, label="layers", help="masked layers; the order of the coordinates alternates")
    hidden: int = hp(64, 4, 256, step=4, label="hidden units",
                     help="tanh units per layer, half seeing the first coordinate, half both")
    fit: str = hp("data", choices=("data",), label="fit to",
                  help="data only: sampling inverts each layer numerically, which gives no gradient for reverse KL")
    average: float = hp(0.998, 0.0, 0.9999, step=0.0001, label="weight averaging", help=AVERAGE_HELP)


@register
class MintNet(FlowModel):
    """MintNet (notes 5.4.7; Song, Meng & Ermon 2019) in 2D: layers of lower-triangular masked weights with a
    positive diagonal, the coordinate order alternating, so each Jacobian is triangular and log|det| is the sum
    of the logs of its diagonal. The density pass is closed form; sampling solves each layer coordinate by
    coordinate with a bracketed Newton iteration (metric `inverse_iterations`)."""

    key = "mintnet"
    menu_rank = 4.7  # after the Gaussianization flow (4.6), before the teacher -> student (iaf_student, 5)
    title = "MintNet (masked triangular layers)"
    Config = MintNetConfig

    def make_layers(self):
        c = self.cfg
        return [MintLayer(c.hidden, reverse=bool(i % 2)) for i in range(c.layers)]

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        return solver_metrics(self)

    def sample(self, n: int) -> torch.Tensor:
        x = super().sample(n)
        self.last_sample_iterations = max_iterations(self.shown)
        return x
