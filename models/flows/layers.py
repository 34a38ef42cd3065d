"""The invertible layers of the normalizing flows (notes ch. 5), one class per paper.

Every layer maps the base side to the data side, z -> x, and returns ``(x, log|det dx/dz|)``;
``layer.inverse(x)`` returns ``(z, log|det dz/dx|)`` (so the two log-dets of a point are
opposite). Which direction is one cheap pass depends on the layer (notes 5.4):

=================  ===================  ===================
layer              z -> x (sampling)    x -> z (density)
=================  ===================  ===================
PlanarLayer        one pass             none in closed form
AdditiveCoupling   one pass             one pass
AffineCoupling     one pass             one pass
MAFLayer           sequential (D)       one pass
IAFLayer           one pass             sequential (D)
=================  ===================  ===================

In 2D "sequential" is two passes of the MADE network, so every direction is cheap here; the
table is what matters in high dimension (Parallel WaveNet, notes 5.4.6).

The layers are written for the playground's two dimensions: a coupling keeps one coordinate and
transforms the other, which slices columns instead of multiplying by masks (fewer operations per
step: ../shared/PERFORMANCE.md).

References:
    Rezende & Mohamed (2015), Variational inference with normalizing flows (planar flows).
    Dinh, Krueger & Bengio (2014), NICE: non-linear independent components estimation.
    Dinh, Sohl-Dickstein & Bengio (2017), Density estimation using Real NVP.
    Papamakarios, Pavlakou & Murray (2017), Masked autoregressive flow for density estimation.
    Kingma et al. (2016), Improved variational inference with inverse autoregressive flow.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..nets import MADE, mlp

SCALE_BOUND = 4.0  # |log-scale| of one affine layer stays below this (tanh soft clamp)
INPUT_BOUND = 3.0  # a conditioner sees its inputs clamped to [-3, 3] (standardised units): ReluNet
PLANAR_MARGIN = 1e-3  # wᵀû ≥ -1 + margin: |det J| stays > 0 in float32 too


def soft_clamp(a: torch.Tensor, bound: float = SCALE_BOUND, sign: float = 1.0) -> torch.Tensor:
    """bound * tanh(a / bound): the identity near 0, never beyond ±bound, so exp(a) cannot
    overflow however large the conditioner's output grows (the "tanh-stabilised" scale).
    sign = -1 gives its negation in the same three operations (the density direction needs -α)."""
    return torch.tanh(a / bound) * (sign * bound)


class ReluNet(nn.Module):
    """A ReLU MLP (nets.mlp) or MADE (nets.MADE, notes 3.1.4) called without the per-module call
    overhead of nn.Sequential: the same parameters and the same function, ~10% faster steps for
    these tiny conditioners (../shared/PERFORMANCE.md: per-op overhead dominates).

    Initialisation: PyTorch's default everywhere, except that a layer's log-scale outputs start at
    zero (:meth:`zero_rows`), so an affine layer starts as a random volume-preserving shear
    x_b = z_b + μ(z_a): no random contraction, and not the identity either. At the identity (a zero
    output layer, as before) the expected gradient of every coupling vanishes on data whose
    standardised coordinates are independent, as on the 25-Gaussian grid: E[∂NLL/∂μ · h(z_a)] =
    E[z_b] E[h(z_a)] = 0 and E[(z_b² − 1) h(z_a)] = 0 for the log-scale — a saddle point that NICE
    did not leave in 3,000 steps (held-out gap 2.89 nats against zuko's 2.16).

    Inputs are clamped to ±`bound` (INPUT_BOUND = 3, in the standardised units the flows work in): inside,
    the net is unchanged; beyond, μ and α keep their values at the boundary, so each layer is an affine map
    of the transformed coordinate there and the flow's tails cannot run away. A ReLU net extrapolates
    linearly, and a stack of eight couplings compounds it: one held-out point of the anisotropic mixture,
    just outside the training points, was pushed to z ≈ 400 (log q = −83,835: 4.2 nats of the mean gap on
    its own, where the median gap was 0.06; Real NVP, 3,000 steps, in a trial with the data standardised to
    standard deviation 4). The clamp is one operation per layer, and any function of the kept coordinates
    leaves a coupling (and MADE's autoregressive structure) invertible with the same log-determinant."""

    def __init__(self, net: nn.Module, bound: float = INPUT_BOUND):
        super().__init__()
        self.net = net
        self.bound = float(bound)
        self.linears = [m for m in net.modules() if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def zero_rows(self, rows: slice) -> None:
        """Start the outputs `rows` of the last layer at exactly 0 (weights and bias)."""
        self.linears[-1].weight[rows].zero_()
        self.linears[-1].bias[rows].zero_()

    @staticmethod
    def _weight(lin: nn.Linear) -> torch.Tensor:
        mask = getattr(lin, "mask", None)  # MADE's MaskedLinear
        return lin.weight if mask is None else lin.weight * mask

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.linears
        h = h.clamp(-self.bound, self.bound)
        for lin in hidden:
            h = F.linear(h, self._weight(lin), lin.bias).relu_()  # in place: one big allocation fewer
        return F.linear(h, self._weight(last), last.bias)


class FlowLayer(nn.Module):
    """One invertible map x = f(z) of a flow (notes 5.2).

    forward(z) -> (x, log|det ∂x/∂z|) of shape ((n, 2), (n,));
    inverse(x) -> (z, log|det ∂z/∂x|).
    """

    name = "layer"

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no inverse")

    def describe(self) -> str:
        """A short label for plots (the layer slider, the per-layer bar chart)."""
        return self.name


# --- planar (notes 5.4.1) --------------------------------------------------------------------------

class PlanarLayer(FlowLayer):
    """x = z + û tanh(wᵀz + b), notes 5.4.1, with |det ∂x/∂z| = |1 + tanh'(wᵀz + b) ûᵀw|.

    Invertibility needs wᵀû ≥ -1 (notes 5.4.1). The free parameter u is mapped to
    û = u + (m(wᵀu) - wᵀu) w / |w|², m(a) = -1 + softplus(a) (Rezende & Mohamed 2015, appendix A.1),
    so wᵀû = m(wᵀu) > -1 whatever values training gives u and w (with a margin of 1e-3 here,
    because softplus underflows to 0 in float32 and |det J| = 1 + tanh'·wᵀû must stay > 0).

    There is no closed-form inverse: :meth:`inverse` says so. :meth:`solve_inverse` finds it
    numerically (no gradient), for drawing the density and the held-out NLL.
    """

    name = "planar"

    def __init__(self, dim: int = 2):
        super().__init__()
        self.u = nn.Parameter(torch.randn(dim) * 0.5)
        self.w = nn.Parameter(torch.randn(dim) * 0.5)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        w2 = (self.w * self.w).sum() + 1e-9
        return self.u + (F.softplus(wu) - 1.0 + PLANAR_MARGIN - wu) * self.w / w2

    def forward(self, z):
        u = self.u_hat()
        h = torch.tanh(z @ self.w + self.b)
        x = z + h[:, None] * u
        log_det = torch.log(torch.abs(1.0 + (1.0 - h * h) * (self.w @ u)) + 1e-12)
        return x, log_det

    def inverse(self, x):
        raise NotImplementedError(
            "a planar flow has no closed-form inverse (notes 5.4.1), so it cannot be fit to data by "
            "maximum likelihood: fit it to a target density (reverse KL) instead; "
            "solve_inverse() inverts it numerically for plotting")

    @torch.no_grad()
    def solve_inverse(self, x: torch.Tensor, iters: int = 60, tol: float = 1e-9):
        """z with f(z) = x, by a safeguarded Newton method on one scalar (float64).

        Write a = wᵀz; then wᵀx = a + c·tanh(a + b) with c = wᵀû > -1, strictly increasing in a,
        and |tanh| < 1 brackets the root in [wᵀx - |c|, wᵀx + |c|]. Once a is found,
        z = x - û tanh(a + b). Returns (z, log|det ∂z/∂x|)."""
        u = self.u_hat().double()
        w, b = self.w.double(), self.b.double()
        xd = x.double()
        s = xd @ w
        c = w @ u
        lo, hi = s - c.abs(), s + c.abs()
        a = s.clone()
        for i in range(iters):
            t = torch.tanh(a + b)
            g = a + c * t - s
            if i % 4 == 3 and float(g.abs().max()) < tol:  # a solves it: stop before moving it
                break
            lo = torch.where(g < 0, a, lo)
            hi = torch.where(g > 0, a, hi)
            newton = a - g / (1.0 + c * (1.0 - t * t))
            inside = (newton >= lo) & (newton <= hi)
            a = torch.where(inside, newton, 0.5 * (lo + hi))
        z = xd - torch.tanh(a + b)[:, None] * u
        _, log_det = self.forward(z.to(x.dtype))
        return z.to(x.dtype), -log_det


# --- couplings: NICE (5.4.2) and Real NVP (5.4.3) ----------------------------------------------------

class ColumnLayer(FlowLayer):
    """A layer that works on the two coordinates as separate (n, 1) columns: push_cols / pull_cols
    replace entries of the list `cols` and return the log-det as (n, 1) (None when it is 0).
    A stack of such layers splits and joins the points once instead of once per layer
    (fewer operations per step: ../shared/PERFORMANCE.md)."""

    def push_cols(self, cols: list[torch.Tensor]) -> torch.Tensor | None:
        raise NotImplementedError

    def pull_cols(self, cols: list[torch.Tensor]) -> torch.Tensor | None:
        raise NotImplementedError

    def forward(self, z):
        cols = [z[:, :1], z[:, 1:]]
        log_det = _flat(self.push_cols(cols), z)
        return torch.cat(cols, 1), log_det

    def inverse(self, x):
        cols = [x[:, :1], x[:, 1:]]
        log_det = _flat(self.pull_cols(cols), x)
        return torch.cat(cols, 1), log_det


def _flat(log_det: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(like.shape[0]) if log_det is None else log_det[:, 0]


class _Coupling(ColumnLayer):
    """Keeps coordinate `keep` and transforms the other one given it (notes 5.4.2).
    Alternating `keep` between layers lets every coordinate be transformed."""

    def __init__(self, keep: int, n_out: int, hidden: int, depth: int):
        super().__init__()
        self.keep = int(keep)
        self.net = ReluNet(mlp(1, n_out, hidden, depth))

    def describe(self) -> str:
        a, b = ("x₁", "x₂") if self.keep == 0 else ("x₂", "x₁")
        return f"{self.name} ({b} | {a})"


class AdditiveCoupling(_Coupling):
    """NICE's additive coupling (notes 5.4.2): x_a = z_a, x_b = z_b + m(z_a); det J = 1."""

    name = "additive coupling"

    def __init__(self, keep: int, hidden: int = 64, depth: int = 2):
        super().__init__(keep, 1, hidden, depth)

    def push_cols(self, cols):
        k = self.keep
        cols[1 - k] = cols[1 - k] + self.net(cols[k])
        return None

    def pull_cols(self, cols):
        k = self.keep
        cols[1 - k] = cols[1 - k] - self.net(cols[k])
        return None


class DiagonalScaling(ColumnLayer):
    """NICE's final rescaling layer (notes 5.4.2): x_i = s_i z_i, log|det| = Σ log s_i.
    Parameterised by log s, so s stays positive."""

    name = "diagonal scaling"

    def __init__(self, dim: int = 2):
        super().__init__()
        self.log_s = nn.Parameter(torch.zeros(dim))

    def push_cols(self, cols):
        s = torch.exp(self.log_s)
        cols[0], cols[1] = cols[0] * s[0], cols[1] * s[1]
        return self.log_s.sum().expand(cols[0].shape[0], 1)

    def pull_cols(self, cols):
        s = torch.exp(-self.log_s)
        cols[0], cols[1] = cols[0] * s[0], cols[1] * s[1]
        return (-self.log_s.sum()).expand(cols[0].shape[0], 1)


class AffineCoupling(_Coupling):
    """Real NVP's affine coupling (notes 5.4.3): x_a = z_a,
    x_b = z_b ⊙ exp(α(z_a)) + μ(z_a), log|det| = Σ α. One net gives μ and α; α is soft-clamped."""

    name = "affine coupling"

    def __init__(self, keep: int, hidden: int = 64, depth: int = 2):
        super().__init__(keep, 2, hidden, depth)
        self.net.zero_rows(slice(1, 2))  # α starts at 0: a shear (ReluNet)

    def _params(self, a: torch.Tensor, sign: float = 1.0):
        """μ and sign·α (sign = -1: -α without a negation of its own, one operation fewer per step)."""
        h = self.net(a)
        return h[:, :1], soft_clamp(h[:, 1:], sign=sign)

    def push_cols(self, cols):
        k = self.keep
        mu, alpha = self._params(cols[k])
        cols[1 - k] = cols[1 - k] * torch.exp(alpha) + mu
        return alpha

    def pull_cols(self, cols):
        k = self.keep
        mu, neg_alpha = self._params(cols[k], sign=-1.0)
        cols[1 - k] = (cols[1 - k] - mu) * torch.exp(neg_alpha)
        return neg_alpha


# --- autoregressive: MAF (5.4.4) and IAF (5.4.5) ------------------------------------------------------

class _Autoregressive(FlowLayer):
    """An affine autoregressive layer: a MADE (notes 3.1.4) gives μ_i and α_i from the
    coordinates before i in `order`; MAF conditions on x, IAF on z (notes 5.4.4-5.4.5)."""

    def __init__(self, dim: int = 2, hidden: int = 64, depth: int = 2, reverse: bool = False):
        super().__init__()
        self.order = list(range(dim, 0, -1)) if reverse else list(range(1, dim + 1))
        self.made = ReluNet(MADE(dim, hidden, depth, out_mult=2, order=self.order))
        self.made.zero_rows(slice(dim, 2 * dim))  # α starts at 0: a shear (ReluNet)

    def _params(self, v: torch.Tensor, sign: float = 1.0):
        """μ and sign·α (sign = -1: -α without a negation of its own)."""
        h = self.made(v).view(v.shape[0], 2, v.shape[1])  # MADE's layout: (n, [μ, α], dim)
        return h[:, 0], soft_clamp(h[:, 1], sign=sign)

    def _sequential(self, known: torch.Tensor, solve):
        """D passes of the MADE: after pass k the first k coordinates in the order are exact."""
        out = torch.zeros_like(known)
        for _ in range(known.shape[1]):
            mu, alpha = self._params(out)
            out = solve(known, mu, alpha)
        return out, alpha

    def describe(self) -> str:
        first = "x₁" if self.order[0] == 1 else "x₂"
        return f"{self.name} ({first} first)"


class MAFLayer(_Autoregressive):
    """Masked autoregressive flow (notes 5.4.4): x_i = z_i exp(α_i(x_<i)) + μ_i(x_<i).
    Density (x -> z) in one pass, sampling (z -> x) sequential."""

    name = "MAF"

    def forward(self, z):
        x, alpha = self._sequential(z, lambda z_, mu, a: z_ * torch.exp(a) + mu)
        return x, alpha.sum(1)

    def inverse(self, x):
        mu, neg_alpha = self._params(x, sign=-1.0)
        return (x - mu) * torch.exp(neg_alpha), neg_alpha.sum(1)


class IAFLayer(_Autoregressive):
    """Inverse autoregressive flow (notes 5.4.5): x_i = z_i exp(α_i(z_<i)) + μ_i(z_<i).
    Sampling (z -> x) in one pass, density (x -> z) sequential."""

    name = "IAF"

    def forward(self, z):
        mu, alpha = self._params(z)
        return z * torch.exp(alpha) + mu, alpha.sum(1)

    def inverse(self, x):
        z, alpha = self._sequential(x, lambda x_, mu, a: (x_ - mu) * torch.exp(-a))
        return z, -alpha.sum(1)
