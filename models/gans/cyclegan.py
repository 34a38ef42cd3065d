"""CycleGAN (notes 6.10, "Translating across domains"): two maps between two datasets, learned without pairs.

Two domains: X, the *source* (a built-in dataset named by the config's `source`), and Y, the data of the tab (the
dataset the run trains on, so every GAN panel and metric applies to Y). Four networks:

* G: X -> Y and F: Y -> X, the two conditional generators;
* D_Y tells the data y from translations G(x); D_X tells the source points x from F(y).

The notes' objective (Zhu et al. 2017, eq. 3):

    L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X)
                        + λ (E_x ||F(G(x)) - x||_1 + E_y ||G(F(y)) - y||_1),

with L_GAN(G, D_Y, X, Y) = E_y log D_Y(y) + E_x log(1 - D_Y(G(x))): the discriminators maximise it, G and F
minimise it. As for the other GANs here G and F take the non-saturating form of their GAN terms
(-E log D_Y(G(x)) and -E log D_X(F(y)); Zhu et al. use least squares), each discriminator has the R1 penalty and
the samples shown come from Ḡ, a weight average of G. The cycle terms are taken in each domain's standardised
coordinates, so λ means the same whatever the datasets' scales; the metrics report them in data units.

The GAN terms only ask that G push X's law onto Y's (and F Y's onto X's): any such map will do, and there are
many. The cycle term asks that F undo G, which picks maps that are (nearly) inverse bijections. With λ = 0 the map
is whatever the game happens to find; the cycle error then stays large while the samples may look just as good.

At the optimum of a case with a known answer (Y = A X + b in law, G(x) = A x + b, F = G⁻¹, both discriminators
undecided): the cycle terms are 0, each discriminator's loss is log 4 and each generator's log 2, and no player's
gradient moves it (tests/test_cyclegan.py).

In the view: arrows x -> G(x) from source points to their translations, the cycle x -> F(G(x)) in the source
domain with the reverse map's fakes F(y), the held-out cycle errors as curves ("cycle_x", "cycle_y": mean
||F(G(x)) - x||_1 and ||G(F(y)) - y||_1 in data units) and D_X's JS estimate ("divergence_x") beside D_Y's.

Reference: Zhu, Park, Isola & Efros (2017), Unpaired image-to-image translation using cycle-consistent
adversarial networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..base import Standardizer, hp, register
from ..nets import mlp
from .gan import GAN, LOG4, PlayersConfig, grid_lines, histogram_js, r1_penalty

# the built-in datasets a source domain may be (playground/datasets.py; models never import the playground, so
# the names are listed here and a test checks them against the playground's)
SOURCES = ("8gaussians", "25gaussians", "moons", "circles", "rings", "swissroll", "pinwheel", "2spirals",
           "checkerboard", "banana", "gaussian", "anisomix")
N_MAP = 60  # source points whose translation x -> G(x) and cycle x -> F(G(x)) the view draws as arrows
N_SOURCE = 300  # source points (and reverse fakes F(y)) the view draws
FALLBACK_N = 2000  # source points of a model built outside a session (a standard normal; see use_source)


@dataclass
class CycleGANConfig(PlayersConfig):
    """The players (as every GAN's) plus the source domain, λ and the R1 penalty on both discriminators.

    Defaults (2,000 steps, seed 0, histogram JS of G(x) against held-out data, lower is better; cycle error
    ‖F(G(x)) − x‖₁ in data units): R1 off, where the other GANs have γ = 1: the cycle term already steadies the
    game, and R1 on top slowed G down (moons → circles at λ = 1: JS 0.25 without R1, 0.42 at γ = 0.1, 0.69 at
    γ = 1). λ = 1: moons → 8 Gaussians JS 0.25 and cycle 0.24 (λ = 0: 0.30 and 2.26); a Gaussian → banana, a
    pair with a smooth bijection between them, 0.08 and 0.18 (λ = 0: 0.11 and 1.27). At λ = 5 the cycle wins
    over the fit where no bijection exists (moons → circles: a torn arc cannot close into a ring): JS 0.35.
    """

    source: str = hp("moons", choices=SOURCES, label="source domain X",
                     help="G maps this built-in dataset onto the tab's data Y; F maps back")
    cycle: float = hp(1.0, 0.0, 50.0, step=0.5, live=True, label="cycle weight λ",
                      help="λ · (‖F(G(x)) − x‖₁ + ‖G(F(y)) − y‖₁), standardised units; 0: no cycle term")
    r1: float = hp(0.0, 0.0, 100.0, step=0.1, live=True, label="R1 penalty γ",
                   help="each D's loss + γ/2 · E_data ‖∇v‖² (Mescheder et al. 2018), on every 4th D step ×4; 0: off")

    @classmethod
    def spec(cls) -> list[dict]:
        """The fields, the two that make a CycleGAN (source and λ) first: the controls follow this order."""
        return sorted(super().spec(), key=lambda f: f["name"] not in ("source", "cycle"))


@register
class CycleGAN(GAN):
    """CycleGAN (notes 6.10): G: X -> Y, F: Y -> X, discriminators D_Y and D_X, and the L1 cycle loss."""

    key = "cyclegan"
    title = "CycleGAN — translating across domains"
    menu_rank = 210
    Config = CycleGANConfig
    input_dim = 2  # G reads a point of the source domain
    surface_mid = 0.5
    surface_label = "D_Y(y)"
    probability = True
    divergence_label = "JS estimate, Y vs G(X) (V_Y + log 4)/2"
    equilibrium = (2 * LOG4, 2 * math.log(2.0))  # both D's losses summed; both generators' GAN terms summed

    def __init__(self, cfg: CycleGANConfig | None = None):
        super().__init__(cfg)
        c = self.cfg
        self.inverse_map = mlp(2, 2, c.g_hidden, c.g_depth, c.activation)  # F: Y -> X
        self.discriminator_x = mlp(2, 1, c.d_hidden, c.d_depth, c.activation)  # D_X
        self.norm_x = Standardizer(2)  # the source domain's standardisation (self.norm is the data's, Y's)
        # the source domain's points, saved with the model (a loaded model samples G(x) without the playground)
        self.register_buffer("source_train", torch.zeros(0, 2))
        self.register_buffer("source_test", torch.zeros(0, 2))
        self.source_name = ""
        self._g_params = list(self.generator.parameters()) + list(self.inverse_map.parameters())

    # --- the source domain ------------------------------------------------------------------------
    def source_domain(self) -> str:
        return self.cfg.source

    def use_source(self, train: torch.Tensor, test: torch.Tensor, name: str) -> None:
        """Told the source domain's points (the session samples the built-in dataset `name` with the run's seed).
        A model built outside a session and never told (init_from_data alone) takes a standard normal."""
        self.source_train = train.detach().to(self.hist_box.device, torch.float32).clone()
        self.source_test = test.detach().to(self.hist_box.device, torch.float32).clone()
        self.source_name = name

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, after resizing the source buffers to the saved ones (their size is the data's)."""
        for name in ("source_train", "source_test"):
            if name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[name], device=self.hist_box.device))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        super().init_from_data(x)
        if self.source_train.shape[0] < 2:
            gen = torch.Generator().manual_seed(self._seed)
            pts = torch.randn(FALLBACK_N, 2, generator=gen)
            self.use_source(pts[: FALLBACK_N * 4 // 5], pts[FALLBACK_N * 4 // 5:], "gaussian")
        self.norm_x.fit(self.source_train)

    # --- the four players -------------------------------------------------------------------------
    def prior(self, n: int, purpose: str = "train") -> torch.Tensor:
        """n source points x ~ X (drawn with replacement from its training points) from the run's `purpose` stream:
        what G reads, as a plain GAN's G reads noise."""
        src = self.source_train
        idx = torch.randint(0, src.shape[0], (n,), device=src.device, generator=self.rng(purpose, src.device))
        return src[idx]

    def generate(self, x: torch.Tensor, generator: torch.nn.Module | None = None) -> torch.Tensor:
        """G(x), data units in and out (or through `generator`, e.g. :attr:`shown`, Ḡ)."""
        return self.norm.inverse((self.generator if generator is None else generator)(self.norm_x(x)))

    def translate_back(self, y: torch.Tensor) -> torch.Tensor:
        """F(y): the tab's data units in, the source domain's out."""
        return self.norm_x.inverse(self.inverse_map(self.norm(y)))

    def critic_x(self, x: torch.Tensor) -> torch.Tensor:
        """D_X's logit at source-domain points x (data units)."""
        return self.discriminator_x(self.norm_x(x)).squeeze(-1)

    def surface(self, v):
        return torch.sigmoid(v)

    def d_loss(self, v_real, v_fake):
        """-L_GAN for one discriminator: real labelled 1, fake 0."""
        return F.softplus(-v_real).mean() + F.softplus(v_fake).mean()

    def g_loss_per_sample(self, v_fake):
        """A generator's non-saturating GAN term, -log D(fake), per fake."""
        return F.softplus(-v_fake)

    def divergence(self, v_real, v_fake):
        """(V + log 4) / 2: the JS divergence at the optimal discriminator, below it otherwise (notes 6.5)."""
        return 0.5 * (LOG4 - self.d_loss(v_real, v_fake))

    def cycle_terms(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_x ||F(G(x)) - x||_1, E_y ||G(F(y)) - y||_1), each in its own domain's standardised coordinates."""
        ux, uy = self.norm_x(x), self.norm(y)
        back_x = self.inverse_map(self.generator(ux))
        back_y = self.generator(self.inverse_map(uy))
        return (back_x - ux).abs().sum(1).mean(), (back_y - uy).abs().sum(1).mean()

    # --- training ---------------------------------------------------------------------------------
    def configure_optimizers(self, settings) -> dict[str, torch.optim.Optimizer]:
        """"d": both discriminators (at lr_d); "g": G and F together (at lr_g)."""
        self._g_params = list(self.generator.parameters()) + list(self.inverse_map.parameters())
        d_params = list(self.discriminator.parameters()) + list(self.discriminator_x.parameters())
        return {"d": self._optimizer(d_params, self.cfg.lr_d), "g": self._optimizer(self._g_params, self.cfg.lr_g)}

    def _d_side(self, disc, norm, real, fake, regularise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator's loss on (real, fake), and its R1 penalty (0 when not regularising)."""
        gamma = self.cfg.r1
        if regularise and gamma > 0:
            r1, v_real = r1_penalty(disc, norm(real))
            penalty = 0.5 * gamma * r1
        else:
            v_real, penalty = disc(norm(real)).squeeze(-1), torch.zeros((), device=real.device)
        return self.d_loss(v_real, disc(norm(fake)).squeeze(-1)), penalty

    def d_step(self, real: torch.Tensor, opt: torch.optim.Optimizer, fake=None) -> dict:
        """One update of both discriminators: D_Y on (y, G(x)), D_X on (x, F(y)); G and F held. R1 lazily."""
        with torch.no_grad():
            x = self.prior(real.shape[0])
            fake_y = self.generate(x)
            fake_x = self.translate_back(real)
        regularise = int(self.d_updates) % 4 == 0
        self.d_updates += 1
        opt.zero_grad(set_to_none=True)
        loss_y, pen_y = self._d_side(self.discriminator, self.norm, real, fake_y, regularise)
        loss_x, pen_x = self._d_side(self.discriminator_x, self.norm_x, x, fake_x, regularise)
        (loss_y + loss_x + 4 * (pen_y + pen_x)).backward()
        opt.step()
        return {"d_loss": float(loss_y.detach() + loss_x.detach()), "d_loss_y": float(loss_y.detach()),
                "d_loss_x": float(loss_x.detach())}

    def _data_batch(self, n: int) -> torch.Tensor:
        if self._train is None:
            raise RuntimeError("CycleGAN: init_from_data first (F needs real points)")
        idx = torch.randint(0, self._train.shape[0], (n,), device=self._train.device,
                            generator=self.rng("train", self._train.device))
        return self._train[idx]

    def generator_objective(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's and F's loss on source points x and data points y: the two GAN terms plus λ times the cycle terms."""
        fake_y, fake_x = self.generate(x), self.translate_back(y)
        adv_g = self.g_loss_per_sample(self.critic(fake_y)).mean()
        adv_f = self.g_loss_per_sample(self.critic_x(fake_x)).mean()
        cyc_x, cyc_y = self.cycle_terms(x, y)
        cycle = cyc_x + cyc_y
        return {"loss": adv_g + adv_f + self.cfg.cycle * cycle, "g_loss": adv_g + adv_f, "adv_g": adv_g,
                "adv_f": adv_f, "cycle_loss": cycle, "fake_y": fake_y}

    def g_step(self, n: int, opt: torch.optim.Optimizer, real: torch.Tensor | None = None) -> dict:
        """One update of G and F together. Logs the mean ||d l_G / d G(x)|| at the translations."""
        y = self._data_batch(n) if real is None else real
        terms = self.generator_objective(self.prior(y.shape[0]), y)
        grads = torch.autograd.grad(terms["loss"], [terms["fake_y"]] + self._g_params)
        for p, g in zip(self._g_params, grads[1:]):
            p.grad = g
        opt.step()
        self._update_average()
        out = {k: float(terms[k].detach()) for k in ("g_loss", "cycle_loss")}
        return {**out, "g_grad_norm": float(grads[0].norm(dim=1).mean() * y.shape[0])}

    def step(self, y: torch.Tensor, optimizers) -> dict[str, float]:
        """k updates of both discriminators, then one of G and F on the same data batch."""
        for i in range(self.cfg.d_steps):
            d = self.d_step(self._real_batch(y, i), optimizers["d"])
        return {"loss": d["d_loss"], **d, **self.g_step(y.shape[0], optimizers["g"], real=y)}

    def loss(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """All four players' losses on one batch, summed so that one backward reaches every network."""
        x = self.prior(y.shape[0], "view")
        with torch.no_grad():
            fake_y, fake_x = self.generate(x), self.translate_back(y)
        loss_y, _ = self._d_side(self.discriminator, self.norm, y, fake_y, False)
        loss_x, _ = self._d_side(self.discriminator_x, self.norm_x, x, fake_x, False)
        g = self.generator_objective(x, y)
        return {"loss": loss_y + loss_x + g["loss"], "d_loss": loss_y + loss_x, "g_loss": g["g_loss"],
                "cycle_loss": g["cycle_loss"]}

    # --- what the views and metrics need ----------------------------------------------------------
    @torch.no_grad()
    def cycle_errors(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(mean ||F(G(x)) - x||_1, mean ||G(F(y)) - y||_1) in data units (the trained G, not Ḡ)."""
        ex = (self.translate_back(self.generate(x)) - x).abs().sum(1).mean()
        ey = (self.generate(self.translate_back(y)) - y).abs().sum(1).mean()
        return float(ex), float(ey)

    @torch.inference_mode()
    def manifold(self, n_lines: int = 11, n_pts: int = 48, span: float = 2.5) -> dict[str, np.ndarray]:
        """Ḡ's image of a grid over the source domain: lines of constant x₂ ("u") and of constant x₁ ("v") over
        [-span, span]² in X's standardised coordinates: how G folds and stretches the plane."""
        u = grid_lines(n_lines, n_pts, span, 2, self.hist_box.device)
        x = self.generate(self.norm_x.inverse(u.reshape(-1, 2)), self.shown).reshape(2, n_lines, n_pts, 2)
        x = x.float().cpu().numpy()
        return {"manifold_u": x[0], "manifold_v": x[1]}

    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """The GAN's record for Y (D_Y's surface, tracked translations G(x) with D_Y's push, Ḡ's warped grid),
        plus the source domain: its points, N_MAP of them with G(x) and F(G(x)), and F(y) of the shown data."""
        out = super().probe(grid, points)
        with torch.no_grad():
            src = self.source_test[:N_MAP]
            mapped = self.generate(src)
            back = self.translate_back(mapped)
            reverse = self.translate_back(points[:N_SOURCE])
        np32 = lambda t: t.float().cpu().numpy()  # noqa: E731
        out.update(source=self.source_name or self.cfg.source, source_xy=np32(self.source_train[:N_SOURCE]),
                   map_from=np32(src), translated=np32(mapped), cycled=np32(back), reverse_xy=np32(reverse))
        return out

    @torch.inference_mode()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """Held out, both ways: D_Y's JS estimate (data vs G(x)) and D_X's (source vs F(y)), the histogram JS of
        Ḡ's translations against the data, and the two cycle errors in data units."""
        src = self.source_test
        x = src[torch.randint(0, src.shape[0], (max(x_test.shape[0], 2000),), device=src.device,
                              generator=self.rng("view", src.device))]
        fake_y = self.generate(x)
        div_y = self.divergence(self.critic(x_test), self.critic(fake_y))
        div_x = self.divergence(self.critic_x(src), self.critic_x(self.translate_back(x_test)))
        shown = fake_y if self.generator_avg is None else self.generate(x, self.generator_avg)
        ex, ey = self.cycle_errors(src, x_test)
        return {"divergence": float(div_y), "divergence_x": float(div_x),
                "hist_js": histogram_js(x_test, shown, self.hist_box), "cycle_x": ex, "cycle_y": ey}


__all__ = ["CycleGAN", "CycleGANConfig", "SOURCES"]
