"""Gaussianization flow (notes 5.4.8; Meng, Song, Song & Ermon 2020).

If U = F_data(X̃) is uniform, Φ⁻¹(F_data(X̃)) is Gaussian: the inverse-CDF trick makes one coordinate Gaussian.
Done to every coordinate, it leaves the marginals Gaussian but not their joint law; a rotation mixes the
coordinates and the next marginal step Gaussianizes again. The notes' three steps, in the data -> latent
direction x -> z, block after block:

    1. marginal Gaussianization   z_d = Φ⁻¹(F_d(x_d)),   log|det ∂z/∂x| = Σ_d [log f_d(x_d) − log φ(z_d)]
    2. rotation                   z = Rᵀ x,               log|det| = 0
    3. repeat (stacked learnable Gaussian copulas)

F_d is a learnable CDF: a mixture of K kernels per coordinate, F_d(x) = Σ_k w_dk G((x − μ_dk) / s_dk), with
density f_d: a trainable kernel density estimate (Meng et al. §4). The paper's kernels are logistic; here they
are Gaussian, for two reasons. (1) With K = 1 the step is exactly the affine standardisation (x − μ) / s, so the
family holds every Gaussian and a Gaussian copula is Gaussianized exactly by one rotation and one marginal step
(tests/test_flow_gaussianization.py sets such a flow by hand). (2) Tails: a Gaussian kernel's tail maps to z
affinely, but a logistic one's is exponential, so the sampling map x = F⁻¹(Φ(z)) grows like s z²/2 and compounds
block after block. Tried here: in a 4-block flow fitted to the moons' quantiles (the probe test), the layer
view's corner node (−3.5, −3.5) of the base reached the last marginal layer at z = 17, far past the clamp below,
and 6.6% of the nodes' densities came out up to 4.5 nats off log_prob; trained 1,000 steps with 6 blocks, its
held-out NLL on the moons was 1.72, hardly better than the Gaussian kernels' 1.74. `kernel_terms` keeps the
logistic kernel for experiments (MarginalGaussianization(kernel="logistic")); the model does not offer it.

Numerical safety: Φ⁻¹(F) is taken on the side of the smaller tail, Φ⁻¹(F) for F < ½ and −Φ⁻¹(1 − F) otherwise,
from log F and log(1 − F) (logsumexp over the kernels of log-CDFs), so float32 keeps its precision in both
tails; that tail probability is clamped at TAIL = 1e-15, |z| ≤ 7.9. Beyond, z is flat (a base N(0, 1) puts
4e-15 there); the log-density stays finite since log f is a logsumexp. A clamp at 1e-6 would flatten the map
at |z| = 4.75, where a held-out point of a N(0, 1) tail still falls once in 500,000.

The latent -> data direction (sampling, the layer-by-layer view) has no closed form: x_d = F_d⁻¹(Φ(z_d)), found
in float64 inside the bracket [min_k μ_k + s_k t*, max_k μ_k + s_k t*], t* the kernel's own quantile at Φ(z)
(F_d(x) ≤ Φ(z) left of it and ≥ right of it, whatever the weights). Pure bisection to 1e-10 took 35 halvings
here; Newton steps kept inside the shrinking bracket, with secant and bisection steps where Newton would leave it
or stall (:func:`bracketed_newton`), reach a residual |Φ⁻¹(F(x)) − z| ≤ 1e-9 in 4 iterations at the start and at
most 9 after 1,000 steps on the moons (the metric `inverse_iterations` reports the worst layer's count over 1,024
base draws). A z beyond the clamp (|z| > 7.94) has no solution and ends at its bracket, after ~45 iterations.
The sampling direction carries no gradient, so the flow is fit to data only.

References:
    Meng, Song, Song & Ermon (2020), Gaussianization flows (AISTATS).
    Laparra, Camps-Valls & Malo (2011), Iterative Gaussianization: from ICA to random rotations (RBIG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..base import BaseConfig, hp, register
from .layers import FlowLayer
from .model import AVERAGE_HELP, FlowModel

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
TAIL = 1e-15  # the smaller tail probability min(F, 1 − F) is clamped here: |z| ≤ Φ⁻¹(1 − 1e-15) ≈ 7.94
SOLVE_TOL = 1e-9  # the sampling direction's root search stops once every residual is this small (in z) ...
BRACKET_TOL = 1e-12  # ... or every bracket this narrow (standardised units)
MAX_SOLVE = 100  # ... or after this many iterations (bisection alone halves a bracket of width 1e18 by then)
SOLVER_POINTS = 1024  # base draws the solver metrics push through the flow


def normal_log_pdf(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - LOG_SQRT_2PI


def kernel_terms(t: torch.Tensor, kernel: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log density, log CDF, log survival) of the standard kernel at t, each in a form that keeps its
    precision deep in the tails."""
    if kernel == "gaussian":
        return normal_log_pdf(t), torch.special.log_ndtr(t), torch.special.log_ndtr(-t)
    # logistic: σ(t), σ'(t) = σ(t) σ(−t)
    return -F.softplus(-t) - F.softplus(t), -F.softplus(-t), -F.softplus(t)


def kernel_quantile(log_p: torch.Tensor, log_q: torch.Tensor, kernel: str) -> torch.Tensor:
    """The standard kernel's quantile at p, given log p and log(1 − p)."""
    if kernel == "gaussian":
        p = torch.exp(torch.minimum(log_p, log_q)).clamp(TAIL, 0.5)
        q = torch.special.ndtri(p)
        return torch.where(log_p < log_q, q, -q)
    return log_p - log_q  # logit


class MarginalGaussianization(FlowLayer):
    """Per-coordinate z_d = Φ⁻¹(F_d(x_d)) with F_d a mixture of K kernels (notes 5.4.8, step 1; Meng et al.
    2020, §4): log|det ∂z/∂x| = Σ_d [log f_d(x_d) − log φ(z_d)], the Jacobian diagonal.

    As a FlowLayer, :meth:`inverse` is this data -> latent map (closed form, what maximum likelihood uses) and
    :meth:`forward` the latent -> data one, x_d = F_d⁻¹(Φ(z_d)) by a bracketed Newton search (no gradient; the
    iterations of the last call are `last_iterations`)."""

    name = "marginal Gaussianization"

    def __init__(self, components: int = 8, kernel: str = "gaussian", dim: int = 2):
        super().__init__()
        if kernel not in ("gaussian", "logistic"):
            raise ValueError(f"unknown kernel '{kernel}'")
        self.kernel = kernel
        k = int(components)
        # spread over ±1.5 with unit-ish widths: close to the identity on standardised data until init_from_data
        self.loc = nn.Parameter(torch.linspace(-1.5, 1.5, k).repeat(dim, 1) if k > 1 else torch.zeros(dim, 1))
        self.log_scale = nn.Parameter(torch.zeros(dim, k))
        self.logits = nn.Parameter(torch.zeros(dim, k))
        self.last_iterations = 0

    def _cdf_terms(self, x: torch.Tensor):
        """log f_d(x_d), log F_d(x_d), log(1 − F_d(x_d)), each (n, dim)."""
        t = (x[:, :, None] - self.loc) * torch.exp(-self.log_scale)
        log_w = torch.log_softmax(self.logits, -1)
        log_k, log_cdf, log_sf = kernel_terms(t, self.kernel)
        log_f = torch.logsumexp(log_w + log_k - self.log_scale, -1)
        return log_f, torch.logsumexp(log_w + log_cdf, -1), torch.logsumexp(log_w + log_sf, -1)

    def gaussianize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = Φ⁻¹(F(x)) per coordinate and log|∂z_d/∂x_d|, both (n, dim)."""
        log_f, log_cdf, log_sf = self._cdf_terms(x)
        lower = log_cdf < log_sf  # the smaller tail: F < ½
        p = torch.exp(torch.where(lower, log_cdf, log_sf)).clamp(TAIL, 0.5)
        q = torch.special.ndtri(p)
        z = torch.where(lower, q, -q)
        return z, log_f - normal_log_pdf(z)

    def inverse(self, x):
        z, log_d = self.gaussianize(x)
        return z, log_d.sum(1)

    @torch.no_grad()
    def solve(self, z: torch.Tensor) -> tuple[torch.Tensor, int]:
        """x with Φ⁻¹(F(x)) = z per coordinate, in float64; returns (x, iterations) (see bracketed_newton)."""
        zd = z.double()
        loc, scale = self.loc.double(), torch.exp(self.log_scale.double())
        t = kernel_quantile(torch.special.log_ndtr(zd), torch.special.log_ndtr(-zd), self.kernel)
        ends = loc + scale * t[:, :, None]  # F(x) ≤ Φ(z) left of the smallest, ≥ right of the largest
        layer = self if z.dtype == torch.float64 else _as_double(self)

        def residual(x):
            g, log_d = layer.gaussianize(x)
            return g - zd, torch.exp(log_d)

        return bracketed_newton(residual, ends.amin(-1), ends.amax(-1))

    def forward(self, z):
        x, self.last_iterations = self.solve(z)
        x = x.to(z.dtype)
        with torch.no_grad():
            _, log_d = self.gaussianize(x)
        return x, -log_d.sum(1)

    def describe(self) -> str:
        k = self.loc.shape[1]
        return f"{self.name} ({k} {self.kernel} kernel{'s' if k > 1 else ''})"


def _as_double(layer: MarginalGaussianization) -> MarginalGaussianization:
    """A float64 copy of the layer's parameters (no gradient), for the root search."""
    twin = MarginalGaussianization.__new__(MarginalGaussianization)
    nn.Module.__init__(twin)
    twin.kernel = layer.kernel
    twin.loc, twin.log_scale, twin.logits = (p.detach().double() for p in (layer.loc, layer.log_scale, layer.logits))
    return twin


class Rotation(FlowLayer):
    """A rotation of the plane by a learnable angle θ (notes 5.4.8, step 2): x = R(θ) z, z = R(θ)ᵀ x,
    log|det| = 0. An orthogonal map keeps N(0, I) as it is, and mixes the coordinates so that the next marginal
    step sees new directions."""

    name = "rotation"

    def __init__(self, angle: float | None = None):
        super().__init__()
        a = float(torch.rand(()) * math.pi) if angle is None else float(angle)
        self.angle = nn.Parameter(torch.tensor(a))

    def matrix(self) -> torch.Tensor:
        c, s = torch.cos(self.angle), torch.sin(self.angle)
        return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])

    def forward(self, z):
        return z @ self.matrix().T, z.new_zeros(z.shape[0])

    def inverse(self, x):
        return x @ self.matrix(), x.new_zeros(x.shape[0])

    def describe(self) -> str:
        return f"{self.name} ({math.degrees(float(self.angle.detach())) % 360:.0f}°)"


# --- the model ---------------------------------------------------------------------------------------

@dataclass
class GaussianizationConfig(BaseConfig):
    layers: int = hp(6, 1, 24, label="blocks",
                     help="blocks of (marginal Gaussianization, rotation); each block is two layers of the slider")
    components: int = hp(8, 1, 32, label="kernels K",
                         help="kernels of each coordinate's learnable CDF F_d (a mixture); K = 1 is an affine map")
    fit: str = hp("data", choices=("data",), label="fit to",
                  help="data only: sampling inverts each CDF numerically, which gives no gradient for reverse KL")
    average: float = hp(0.998, 0.0, 0.9999, step=0.0001, label="weight averaging", help=AVERAGE_HELP)


@register
class GaussianizationFlow(FlowModel):
    """Gaussianization flow (notes 5.4.8; Meng et al. 2020): L blocks of a learnable marginal Gaussianization
    z_d = Φ⁻¹(F_d(x_d)), F_d a mixture of K kernels, followed by a learnable rotation, from data to latent.
    The density pass is closed form; sampling inverts each F_d by a bracketed Newton search. Initialised from the
    data as iterative Gaussianization does (Laparra et al. 2011): each marginal layer's kernels start at the quantiles
    of what reaches it, so the untrained flow is already a rough Gaussianization that training refines."""

    key = "gaussianization"
    menu_rank = 4.6  # after the neural spline flow (4.5), before the teacher -> student (iaf_student, 5)
    title = "Gaussianization flow (marginal CDFs + rotations)"
    Config = GaussianizationConfig

    def make_layers(self):
        c = self.cfg
        blocks = [[Rotation(), MarginalGaussianization(c.components)] for _ in range(c.layers)]
        return [layer for block in blocks for layer in block]  # z -> x; data -> latent: marginal, rotation, ...

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Standardise, then walk the data from x towards z: every marginal layer's K kernels go to the
        quantiles (k + ½)/K of each coordinate it receives, with Silverman's width 1.06 σ K^(-1/5), so that
        F_d starts as a smoothed empirical CDF. No random draws (the run's generators stay as they are)."""
        super().init_from_data(x)
        u = self.standardizer(x)
        for layer in reversed(self.flow.layers):
            if isinstance(layer, MarginalGaussianization):
                k = layer.loc.shape[1]
                q = (torch.arange(k, dtype=u.dtype, device=u.device) + 0.5) / k
                layer.loc.copy_(torch.quantile(u, q, dim=0).T)
                width = 1.06 * u.std(0).clamp_min(1e-3) * k ** -0.2
                layer.log_scale.copy_(torch.log(width)[:, None].expand_as(layer.log_scale))
                layer.logits.zero_()
            u = layer.inverse(u)[0]
        if self.averaged is not None:
            self.averaged.load_state_dict(self.flow.state_dict())

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        return solver_metrics(self)

    def sample(self, n: int) -> torch.Tensor:
        x = super().sample(n)
        self.last_sample_iterations = max_iterations(self.shown)
        return x


@torch.no_grad()
def bracketed_newton(residual, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The roots of increasing functions, elementwise, inside brackets [lo, hi] that hold them (after Press et al.,
    Numerical Recipes §9.4, rtsafe): each iterate shrinks its bracket to the side of the root, and a Newton step
    that stays inside the bracket and is shorter than half the step before is taken. Any other falls back, in
    turn, on the secant (false position) through the bracket's two evaluated ends and on bisection, so the
    bracket at least halves every second fallback. A point stops moving once |g| ≤ SOLVE_TOL. `residual(x)`
    gives (g(x), g'(x)). Stops when every |g| ≤ SOLVE_TOL, or every unsolved bracket is narrower than
    BRACKET_TOL, or after MAX_SOLVE iterations; returns (x, iterations used).

    Why the secant: with bisection alone as the fallback (rtsafe's), a few points of a MintNet layer took 30+
    iterations: their root lay a hair inside an end that an earlier iterate had set, and every Newton step from
    the other side overshot that end by more than the hair; the secant through the ends lands next to such a root.
    Why the step-length test: without it, Newton steps ping-ponged across an inflection of a trained marginal
    layer's map, each landing just inside the bracket, for 100 iterations."""
    x = 0.5 * (lo + hi)
    g_lo, g_hi = torch.full_like(x, math.nan), torch.full_like(x, math.nan)  # g at the ends, once evaluated
    bisect_next = torch.zeros_like(x, dtype=torch.bool)
    last_step = 2.0 * (hi - lo)
    for i in range(MAX_SOLVE):
        g, dg = residual(x)
        active = g.abs() > SOLVE_TOL
        if not bool(active.any()) or float((hi - lo)[active].max()) <= BRACKET_TOL:
            return x, i
        below, above = g < 0, g > 0
        lo, g_lo = torch.where(below, x, lo), torch.where(below, g, g_lo)
        hi, g_hi = torch.where(above, x, hi), torch.where(above, g, g_hi)
        newton = x - g / dg
        # rtsafe's second test: a Newton step no shorter than half the one before is not converging (it can
        # ping-pong across an inflection, each landing inside the bracket): fall back
        inside = (newton > lo) & (newton < hi) & ((newton - x).abs() < 0.5 * last_step)
        secant = lo - g_lo * (hi - lo) / (g_hi - g_lo)
        use_secant = ~bisect_next & torch.isfinite(secant) & (secant > lo) & (secant < hi)
        fallback = torch.where(use_secant, secant, 0.5 * (lo + hi))
        x_new = torch.where(active, torch.where(inside, newton, fallback), x)
        last_step, x = (x_new - x).abs(), x_new
        bisect_next = torch.where(inside, bisect_next, ~bisect_next)
    return x, MAX_SOLVE


def max_iterations(flow) -> int:
    """The largest iteration count of the last latent -> data pass of any layer of `flow`."""
    return max((getattr(layer, "last_iterations", 0) for layer in flow.layers), default=0)


@torch.no_grad()
def solver_metrics(model: FlowModel, n: int = SOLVER_POINTS) -> dict[str, float]:
    """The iterative inverse at work: n fixed base draws (a generator of their own, seed 0: the run's streams
    are not touched) pushed z -> x through the shown flow, then pulled back in closed form.
    inverse_iterations: the most iterations any layer needed; inverse_error: max |z − f⁻¹(f(z))|."""
    dev = model.standardizer.shift.device
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)).to(dev)
    u, _ = model.shown(z)
    iters = max_iterations(model.shown)
    back, _ = model.shown.inverse(u)
    return {"inverse_iterations": float(iters), "inverse_error": float((back - z).abs().max())}
