"""Generative adversarial networks (notes ch. 6): a generator G and a discriminator / critic D.

A generator maps noise z ~ N(0, I) to a point x = G(z); it has no density (density = "none"):
it is judged by two-sample tests (notes 6.2), here a discriminator trained against it.

* **Minimax GAN** (notes 6.4, Goodfellow et al. 2014): D maximises
  V(G, D) = E_p[log D(x)] + E_q[log(1 - D(x))] and G minimises the same V. At the optimal
  D*(x) = p/(p+q), V(G, D*) = -log 4 + 2 JSD(p, q) (notes 6.5), so V is a JS estimate.
* **Non-saturating GAN** (same paper): G minimises -E_q[log D(G(z))] instead: the same fixed point,
  but its gradient does not vanish where D confidently rejects the fakes (minimax's is D(x) times
  smaller there; the logged g_grad_norm shows it).

The f-GANs (notes 6.7) are in models/gans/fgan.py and the Wasserstein GANs (notes 6.8) in
models/gans/wgan.py, on the same base class :class:`GAN`.

Both players see standardised coordinates (a :class:`Standardizer` fitted to the data), so one
set of defaults works for any data scale; the generator's push and WGAN-GP's penalty are taken in data
coordinates, the R1 penalty in standardised ones (it is a regulariser, not a distance).
Each optimisation step (:meth:`GAN.step`) is k discriminator steps, then one generator step.

Defaults (chosen on 25 Gaussians at 3,000 steps, the `bench quality` budget; the table is in
:class:`GANConfig`): ReLU networks, Adam with beta = (0, 0.9), the generator's step twice the
discriminator's, the R1 penalty on the discriminator (classic and f-GANs) and samples from a moving
average of the generator's weights.

References:
    Goodfellow et al. (2014), Generative adversarial nets.
    Srivastava et al. (2017), VEEGAN (mode coverage and high-quality samples on 2D mixtures).
    Mescheder, Geiger & Nowozin (2018), Which training methods for GANs do actually converge? (R1, eq. 9).
    Karras et al. (2020), Analyzing and improving the image quality of StyleGAN (lazy regularisation, §4).
    Yazıcı et al. (2019), The unusual effectiveness of averaging in GAN training (moving average of G).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from ..base import BaseConfig, Model2D, Standardizer, hp, make_adam, register, update_average
from ..nets import mlp

LOG4 = math.log(4.0)
N_PROBE = 128  # fakes that carry a generator-gradient arrow in the view (the same z every frame)
HIST_BINS = 20  # bins per axis of the real-vs-fake histogram JS
R1_EVERY = 4  # the R1 penalty is applied on every 4th discriminator step, 4x weighted (lazy regularisation)

AVERAGE_HELP = ("the samples, manifold and sample metrics shown come from Ḡ, a moving average of G's weights "
                "with this decay (0: from G itself); the game trains G, and the tracked fakes are G's")


@dataclass
class PlayersConfig(BaseConfig):
    """The players and their optimisers (every GAN's; :class:`GANConfig` adds the latent dimension).

    Modes of 25 Gaussians covered at 3,000 steps (`python -m playground bench quality`): with these
    defaults all 25 for every classic and f-GAN objective (seeds 0-3, high-quality samples 0.68-0.85);
    the former ones (leaky ReLU, both learning rates 2e-3, Adam beta = (0.5, 0.999), no R1, no averaging)
    covered 7-18 (seeds 0-1, high-quality 0.12-0.43). On gan_ns alone, seeds 0-1: ReLU and beta = (0, 0.9)
    gave 19-21, lr_g = 2 lr_d then 22-25, averaging 24-25; R1 then 25 on all of seeds 0-3 (without it
    22-25). A step costs about 11% more, mostly R1's double backward on every 4th D step (every 8th: half
    that, one run of 16 at 24). Wider nets (128) also helped but cost 20-40% a step; a larger latent
    dimension, more layers or k = 2 did not raise the count.
    """

    renamed = {"g_layers": "g_depth", "d_layers": "d_depth"}  # their names before the families agreed on them

    g_hidden: int = hp(64, 8, 256, step=8, label="generator width", help="units per hidden layer of G")
    g_depth: int = hp(2, 1, 4, label="generator hidden layers")
    d_hidden: int = hp(64, 8, 256, step=8, label="discriminator width", help="units per hidden layer of D")
    d_depth: int = hp(2, 1, 4, label="discriminator hidden layers")
    activation: str = hp("relu", choices=("relu", "leaky_relu", "tanh", "elu"), label="activation")
    lr_g: float = hp(4e-3, 1e-5, 0.1, log=True, live=True, label="generator learning rate",
                     help="G's step size; can be changed while training runs")
    lr_d: float = hp(2e-3, 1e-5, 0.1, log=True, live=True, label="discriminator learning rate",
                     help="D's step size; can be changed while training runs")
    optimizer: str = hp("adam", choices=("adam", "rmsprop", "sgd"), label="optimizer",
                        help="the same kind for both players, each with its own state")
    beta1: float = hp(0.0, 0.0, 0.95, step=0.05, label="Adam β₁", help="momentum of Adam (GANs: 0.5 or 0)")
    beta2: float = hp(0.9, 0.5, 0.999, step=0.001, label="Adam β₂")
    d_steps: int = hp(1, 1, 10, live=True, label="D steps per G step (k)",
                      help="discriminator updates before each generator update")
    average: float = hp(0.99, 0.0, 0.9999, step=0.0001, label="generator weight averaging", help=AVERAGE_HELP)


@dataclass
class GANConfig(PlayersConfig):
    """PlayersConfig plus the generator's noise z ~ N(0, I) (a CycleGAN's generator reads a point instead)."""

    latent_dim: int = hp(2, 1, 8, label="latent dimension",
                         help="z ~ N(0, I) in this many dimensions; 1 or 2 show the whole generator manifold")


@dataclass
class R1Config(GANConfig):
    """The classic and f-GANs: GANConfig plus the R1 penalty on the discriminator."""

    r1: float = hp(1.0, 0.0, 100.0, step=0.1, live=True, label="R1 penalty γ",
                   help="D's loss + γ/2 · E_data ‖∇ₓv(x)‖² (Mescheder et al. 2018), on every 4th D step ×4; 0: off")


def r1_penalty(discriminator, u_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The R1 penalty E_p[||grad_u v(u)||^2] of Mescheder et al. (2018, eq. 9) on real points u (in the
    discriminator's own, standardised, coordinates), and v(u) at them. The graph is kept (create_graph)
    so that the penalty trains the discriminator; it is zero where D is flat on the data, so it leaves
    the game's equilibrium (p = q, D undecided) in place and damps D's oscillation around it."""
    u = u_real.detach().requires_grad_(True)
    v = discriminator(u).squeeze(-1)
    (grad,) = torch.autograd.grad(v.sum(), u, create_graph=True)
    return grad.pow(2).sum(1).mean(), v


def grid_lines(n_lines: int, n_pts: int, span: float, dim: int, device) -> torch.Tensor:
    """(2, n_lines, n_pts, dim) points on a grid over [-span, span]² in the first two coordinates (others 0): [0] the
    lines of constant second coordinate, [1] those of constant first. What a generator's manifold maps."""
    t = torch.linspace(-span, span, n_pts, device=device)
    levels = torch.linspace(-span, span, n_lines, device=device)
    u = torch.zeros(2, n_lines, n_pts, dim, device=device)
    u[0, :, :, 0], u[0, :, :, 1] = t[None, :], levels[:, None]
    u[1, :, :, 0], u[1, :, :, 1] = levels[:, None], t[None, :]
    return u


@torch.no_grad()
def histogram_js(real: torch.Tensor, fake: torch.Tensor, box: torch.Tensor, bins: int = HIST_BINS) -> float:
    """Jensen-Shannon divergence in bits (0: same histogram, 1: disjoint) between the 2D histograms of
    two samples on a bins x bins grid over box = (xmin, xmax, ymin, ymax), as GAN Lab reports it.
    Points outside the box count in the edge bins. With few points it has a small positive floor."""
    def hist(x):
        lo = box[[0, 2]]
        width = (box[[1, 3]] - lo) / bins
        ij = ((x - lo) / width).floor().long().clamp(0, bins - 1)
        return torch.bincount(ij[:, 1] * bins + ij[:, 0], minlength=bins * bins).double() / x.shape[0]

    p, q = hist(real), hist(fake)
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return (a[nz] * torch.log2(a[nz] / m[nz])).sum()

    return float(0.5 * kl(p) + 0.5 * kl(q))


class GAN(Model2D):
    """Base of every GAN: the two networks, the alternating updates, probes and metrics.

    A subclass says what the game is through four functions of the discriminator's raw output v
    (a logit, a critic value, or the input to an f-GAN's output activation):
    :meth:`d_loss` (minimised by D), :meth:`g_loss_per_sample` (minimised by G), :meth:`surface`
    (what the heatmap shows) and :meth:`divergence` (the estimate the game gives).

    Weight averaging (config `average` = d > 0): the game trains `generator`; after each of its updates
    a copy, `generator_avg` = Ḡ, moves towards it, θ̄ ← d_t θ̄ + (1 − d_t) θ with
    d_t = min(d, (1 + t)/(10 + t)) (as the flows do: models/flows/model.py). The samples, the manifold and the
    sample metrics (modes covered, histogram JS) come from Ḡ (:attr:`shown`); the tracked fakes, their
    push and the divergence estimate from G, the player the discriminator faces. At a constant step size
    G keeps circling the equilibrium; its average sits nearer it (Yazıcı et al. 2019).
    """

    family = "gan"
    probe_kind = "gan"
    density = "none"
    Config = GANConfig
    surface_mid: float | None = 0.0  # the surface's value where D cannot tell real from fake
    # what the views call things (they reach them through the probe, so a new GAN brings its own):
    surface_label: ClassVar[str] = "D(x)"  # the heatmap: what the discriminator outputs
    divergence_label: ClassVar[str] = "divergence estimate"  # what the divergence curve estimates or bounds
    # the players' losses when the generator has won (p = q, D undecided): (D's, G's or None); None: no such line
    equilibrium: ClassVar[tuple[float, float | None] | None] = None
    wasserstein: ClassVar[bool] = False  # a Wasserstein critic: no fixed "cannot tell" value, a gap rather than nats
    probability: ClassVar[bool] = False  # the surface is a probability, in [0, 1]

    def __init__(self, cfg: GANConfig | None = None):
        super().__init__(cfg)
        c = self.cfg
        self.generator = mlp(self.input_dim, 2, c.g_hidden, c.g_depth, c.activation)
        self.generator_avg = copy.deepcopy(self.generator).requires_grad_(False) if c.average > 0 else None
        self._avg_pairs = None
        # counters saved with the parameters, so that a checkpoint replays exactly: the generator updates
        # averaged so far (the decay's warm-up) and the discriminator updates (lazy R1's phase)
        self.register_buffer("avg_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("d_updates", torch.zeros((), dtype=torch.long))
        self.discriminator = mlp(2, 1, c.d_hidden, c.d_depth, c.activation)
        self.norm = Standardizer(2)
        self.register_buffer("hist_box", torch.tensor([-4.0, 4.0, -4.0, 4.0]))
        gen = torch.Generator().manual_seed(1234)
        self.register_buffer("z_probe", torch.randn(N_PROBE, self.input_dim, generator=gen), persistent=False)
        self._train: torch.Tensor | None = None
        self._g_params = list(self.generator.parameters())

    @property
    def input_dim(self) -> int:
        """The dimension of what G reads: the latent z (a CycleGAN's G reads a 2D point of its source domain)."""
        return self.cfg.latent_dim

    # --- the two players ----------------------------------------------------------------------
    def prior(self, n: int, purpose: str = "train") -> torch.Tensor:
        """n draws of z ~ N(0, I) from the run's `purpose` generator (RunGenerators)."""
        dev = self.hist_box.device
        return torch.randn(n, self.cfg.latent_dim, device=dev, generator=self.rng(purpose, dev))

    @property
    def shown(self) -> torch.nn.Module:
        """The generator whose samples are shown: the weight average Ḡ when averaging, else G."""
        return self.generator if self.generator_avg is None else self.generator_avg

    def generate(self, z: torch.Tensor, generator: torch.nn.Module | None = None) -> torch.Tensor:
        """x = G(z) in data coordinates (or through `generator`, e.g. :attr:`shown`)."""
        return self.norm.inverse((self.generator if generator is None else generator)(z))

    @torch.no_grad()
    def _update_average(self) -> None:
        """θ̄ ← d_t θ̄ + (1 − d_t) θ, d_t = min(d, (1 + t)/(10 + t)): one fused op over G's tensors."""
        if self.generator_avg is None:
            return
        if self._avg_pairs is None:
            self._avg_pairs = (list(self.generator_avg.parameters()), list(self.generator.parameters()))
        t = int(self.avg_updates)
        self.avg_updates += 1
        update_average(*self._avg_pairs, self.cfg.average, t)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's raw output v(x), shape (n,)."""
        return self.discriminator(self.norm(x)).squeeze(-1)

    # --- the game (subclasses) ------------------------------------------------------------------
    def d_loss(self, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss_per_sample(self, v_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def surface(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def divergence(self, v_real: torch.Tensor, v_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_terms(self, real: torch.Tensor, fake: torch.Tensor, regularise: bool = True) -> dict[str, torch.Tensor]:
        """D's terms on a real and a fake batch: "d_loss", the game's loss (what the curves show), and,
        where the config has a penalty and `regularise` is set, "penalty", added to it for D's update.

        With R1 (config `r1` = γ > 0): penalty = γ/2 · E_p ||∇_u v(u)||² (:func:`r1_penalty`); the real
        and fake batches then take a forward pass each, else one pass over both."""
        gamma = getattr(self.cfg, "r1", 0.0)
        n = real.shape[0]
        if regularise and gamma > 0:
            r1, v_real = r1_penalty(self.discriminator, self.norm(real))
            v_fake = self.critic(fake)
            return {"d_loss": self.d_loss(v_real, v_fake), "penalty": 0.5 * gamma * r1, "r1": r1}
        v = self.critic(torch.cat([real, fake]))
        return {"d_loss": self.d_loss(v[:n], v[n:])}

    def after_d_step(self) -> None:
        """Called after every discriminator update (WGAN clips its weights here)."""

    # --- training -----------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        self.norm.fit(x)
        lo, hi = x.min(0).values, x.max(0).values
        pad = 0.05 * (hi - lo).clamp_min(1e-3)
        self.hist_box.copy_(torch.stack([lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]]))
        self._train = x
        self.reset_generators(x.device)

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        c = self.cfg
        if c.optimizer == "adam":
            return make_adam(params, lr, betas=(c.beta1, c.beta2))
        if c.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        return torch.optim.SGD(params, lr=lr)

    def configure_optimizers(self, settings) -> dict[str, torch.optim.Optimizer]:
        """Separate optimisers for the two players: "d" and "g" (the shared `lr` setting is unused:
        GANs have lr_d and lr_g)."""
        self._g_params = list(self.generator.parameters())
        return {"d": self._optimizer(self.discriminator.parameters(), self.cfg.lr_d),
                "g": self._optimizer(self.generator.parameters(), self.cfg.lr_g)}

    def live_update(self, name: str, value: Any, optimizers) -> None:
        if name == "lr":
            return  # GANs have one learning rate per player
        value = self.cfg.coerce(name, value)
        setattr(self.cfg, name, value)
        opt = {"lr_d": "d", "lr_g": "g"}.get(name)
        if opt and opt in optimizers:
            for group in optimizers[opt].param_groups:
                group["lr"] = float(value)

    def _real_batch(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The i-th critic step's real batch: x itself first, then fresh batches of its size."""
        if i == 0 or self._train is None or x.shape[0] >= self._train.shape[0]:
            return x
        idx = torch.randint(0, self._train.shape[0], (x.shape[0],), device=x.device,
                            generator=self.rng("train", x.device))
        return self._train[idx]

    def d_step(self, real: torch.Tensor, opt: torch.optim.Optimizer, fake: torch.Tensor | None = None) -> dict:
        """One discriminator update against fresh fakes (or the given ones). The R1 penalty is lazy
        (Karras et al. 2020, §4): on every R1_EVERY-th update, weighted R1_EVERY times, which costs a
        quarter of the double backward and trains as well here; WGAN-GP's penalty is on every update.
        Returns the logged terms (the game's d_loss and the penalty's own terms, not its weighted sum)."""
        if fake is None:
            with torch.no_grad():
                fake = self.generate(self.prior(real.shape[0]))
        lazy = getattr(self.cfg, "r1", 0.0) > 0
        regularise = not lazy or int(self.d_updates) % R1_EVERY == 0
        self.d_updates += 1
        opt.zero_grad(set_to_none=True)
        terms = self.d_terms(real, fake, regularise=regularise)
        objective = terms["d_loss"]
        if "penalty" in terms:
            objective = objective + (R1_EVERY if lazy else 1) * terms["penalty"]
        objective.backward()
        opt.step()
        self.after_d_step()
        skip = ("penalty", "r1")  # r1 exists on one step in four: not a per-step curve
        return {k: float(v.detach()) for k, v in terms.items() if k not in skip}

    def g_step(self, n: int, opt: torch.optim.Optimizer) -> dict:
        """One generator update. Also logs the mean norm of the generator loss's gradient at each
        fake, ||d l_G / d x||: the signal G receives (it vanishes for the saturating minimax loss)."""
        fake = self.generate(self.prior(n))
        loss = self.g_loss_per_sample(self.critic(fake)).mean()
        grads = torch.autograd.grad(loss, [fake] + self._g_params)
        for p, g in zip(self._g_params, grads[1:]):
            p.grad = g
        opt.step()
        self._update_average()
        return {"g_loss": float(loss.detach()), "g_grad_norm": float(grads[0].norm(dim=1).mean() * n)}

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        """k = d_steps discriminator updates, then one generator update; "loss" is D's loss."""
        for i in range(self.cfg.d_steps):
            d = self.d_step(self._real_batch(x, i), optimizers["d"])
        g = self.g_step(x.shape[0], optimizers["g"])
        return {"loss": d["d_loss"], **d, **g}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both players' losses on one batch, summed so that one backward reaches both networks
        (training never uses the sum: each optimiser steps its own player, see :meth:`step`)."""
        fake = self.generate(self.prior(x.shape[0], "view"))
        d = self.d_terms(x, fake)
        g = self.g_loss_per_sample(self.critic(fake)).mean()
        return {"loss": d["d_loss"] + d.get("penalty", 0.0) + g, **d, "g_loss": g}

    # --- what the views and metrics need ------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n samples of the shown generator (Ḡ when averaging)."""
        return self.generate(self.prior(n, "view"), self.shown)

    def generator_push(self, fake: torch.Tensor) -> torch.Tensor:
        """-grad_x l_G(x) at each fake x: the direction (and strength) in which G is pushed to move it."""
        with torch.enable_grad():
            x = fake.detach().requires_grad_(True)
            return -torch.autograd.grad(self.g_loss_per_sample(self.critic(x)).sum(), x)[0]

    @torch.inference_mode()
    def manifold(self, n_lines: int = 11, n_pts: int = 48, span: float = 2.5) -> dict[str, np.ndarray]:
        """The image of a latent grid under the shown generator: lines of constant z2 ("u") and of
        constant z1 ("v") over [-span, span]^2, other latent coordinates 0 (a slice when latent_dim > 2).
        For latent_dim 1 one curve over [-3, 3]."""
        dev, d, gen = self.hist_box.device, self.cfg.latent_dim, self.shown
        if d == 1:
            z = torch.linspace(-3.0, 3.0, 200, device=dev)[:, None]
            return {"manifold_u": self.generate(z, gen).cpu().numpy()[None]}
        z = grid_lines(n_lines, n_pts, span, d, dev)
        x = self.generate(z.reshape(-1, d), gen).reshape(2, n_lines, n_pts, 2).cpu().numpy()
        return {"manifold_u": x[0], "manifold_v": x[1]}

    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """The discriminator surface on the grid (flat, row by row), tracked fakes G(z_probe) of the
        trained generator with the push -grad_x l_G at each, and the shown generator's manifold."""
        with torch.inference_mode():
            surf = torch.cat([self.surface(self.critic(g)) for g in grid.split(4096)])
        with torch.no_grad():  # not inference mode: the push below differentiates through these
            fake = self.generate(self.z_probe)
        push = self.generator_push(fake)
        out = {"surface": surf.float().cpu().numpy(), "fake_xy": fake.cpu().numpy(),
               "fake_push": push.float().cpu().numpy()}
        mid = self.surface_mid
        if mid is None:  # a critic has no fixed "undecided" value: the midpoint of real and fake
            with torch.no_grad():
                s = self.surface(self.critic(torch.cat([points, fake])))
            mid = 0.5 * (float(s[: len(points)].mean()) + float(s[len(points):].mean()))
        out["surface_mid"] = np.float32(mid)
        out["latent_dim"] = np.int32(self.input_dim)
        eq = self.equilibrium
        out.update(surface_label=self.surface_label, divergence_label=self.divergence_label,
                   wasserstein=self.wasserstein, probability=self.probability,
                   equilibrium_d=np.float32(eq[0] if eq else np.nan),
                   equilibrium_g=np.float32(eq[1] if eq and eq[1] is not None else np.nan))
        out["averaged"] = self.generator_avg is not None
        out.update(self.manifold())
        return out

    @torch.inference_mode()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """The game's divergence estimate on held-out data against fresh fakes of G (the player D
        faces), and the histogram JS of the shown generator's samples (Ḡ's when averaging)."""
        n = x_test.shape[0]
        z = self.prior(max(n, 2000), "view")
        fake = self.generate(z)
        v = self.critic(torch.cat([x_test, fake]))
        shown = fake if self.generator_avg is None else self.generate(z, self.generator_avg)
        return {"divergence": float(self.divergence(v[:n], v[n:])),
                "hist_js": histogram_js(x_test, shown, self.hist_box)}


# --- the classic GAN (notes 6.4-6.6) ----------------------------------------------------------------

class ClassicGAN(GAN):
    """D(x) = sigmoid(v(x)); D maximises V(G, D) = E_p log D + E_q log(1 - D) (notes 6.4)."""

    Config = R1Config
    surface_mid = 0.5
    surface_label = "D(x) = P(real | x)"
    probability = True
    divergence_label = "JS estimate (V + log 4)/2 ≤ JSD"

    def d_loss(self, v_real, v_fake):
        # -V: -log sigmoid(v) = softplus(-v), -log(1 - sigmoid(v)) = softplus(v)
        return F.softplus(-v_real).mean() + F.softplus(v_fake).mean()

    def surface(self, v):
        return torch.sigmoid(v)

    def divergence(self, v_real, v_fake):
        """(V + log 4) / 2: at the optimal D this is JSD(p, q) (notes 6.5); below it otherwise."""
        return 0.5 * (LOG4 - self.d_loss(v_real, v_fake))


@register
class MinimaxGAN(ClassicGAN):
    """The minimax (saturating) GAN of notes 6.4: G minimises E_q log(1 - D(G(z)))."""

    key = "gan_minimax"
    title = "GAN — minimax (saturating)"
    equilibrium = (LOG4, -math.log(2))  # D: -V = log 4; G: E log(1 - 1/2)

    def g_loss_per_sample(self, v_fake):
        return -F.softplus(v_fake)  # log(1 - sigmoid(v))


@register
class NonSaturatingGAN(ClassicGAN):
    """The non-saturating GAN (Goodfellow et al. 2014): G minimises -E_q log D(G(z))."""

    key = "gan_ns"
    in_compare = True  # a representative of its family in a comparison
    title = "GAN — non-saturating"
    equilibrium = (LOG4, math.log(2))  # D: log 4; G: -E log(1/2)

    def g_loss_per_sample(self, v_fake):
        return F.softplus(-v_fake)  # -log sigmoid(v)


__all__ = ["GAN", "GANConfig", "R1Config", "ClassicGAN", "MinimaxGAN", "NonSaturatingGAN", "histogram_js",
           "r1_penalty"]
