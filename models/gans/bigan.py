"""BiGAN / ALI (notes 6.9): a GAN that also learns the inverse map, an encoder E: x -> z.

Three networks: the generator G: z -> x (z ~ N(0, I)), the encoder E: x -> z (it sees only data) and a
discriminator D on (x, z) pairs that tells the encoder's pairs (x, E(x)), x ~ p, from the generator's
(G(z), z), z ~ p(z). D maximises

    V(D, E, G) = E_p[log D(x, E(x))] + E_z[log(1 - D(G(z), z))]

and E and G together minimise it. At the optimal D* = p_E / (p_E + p_G) of the two joint distributions
V = -log 4 + 2 JSD(p_E(x, z), p_G(x, z)) (as notes 6.5 for the plain GAN), so the game's value is -log 4
exactly when the joints agree, and then E = G⁻¹ (Donahue et al. 2017, Thm. 2): E(G(z)) = z and G(E(x)) = x.
As in those papers E and G are trained on the flipped (non-saturating) labels: they minimise
-E_p[log(1 - D(x, E(x)))] - E_z[log D(G(z), z)].

In 2D with a 2D latent the view shows what E learned: the codes E(x) over the prior, the reconstructions
x -> G(E(x)), and how far E is from G⁻¹: metrics "recon_x" = mean ||G(E(x)) - x|| on held-out x (data units)
and "recon_z" = mean ||E(G(z)) - z|| over prior draws. Both use the trained G, the one E plays with and
inverts; the samples and the manifold come from Ḡ, the weight average, as in every GAN here.

References:
    Donahue, Krähenbühl & Darrell (2017), Adversarial feature learning (BiGAN).
    Dumoulin et al. (2017), Adversarially learned inference (ALI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..base import hp, register
from ..nets import mlp
from .gan import GAN, LOG4, R1Config, histogram_js, r1_penalty

N_RECON = 60  # reconstructions x -> G(E(x)) the view draws as arrows
N_CODES = 600  # latent codes E(x) the view draws


@dataclass
class BiGANConfig(R1Config):
    """GANConfig plus the encoder; the latent panel shows (z₁, z₂), so the latent has at least 2 dimensions."""

    latent_dim: int = hp(2, 2, 8, label="latent dimension",
                         help="z ~ N(0, I); the latent panel shows (z₁, z₂) of the codes E(x)")
    e_hidden: int = hp(64, 8, 256, step=8, label="encoder width", help="units per hidden layer of E")
    e_depth: int = hp(2, 1, 4, label="encoder hidden layers")


@register
class BiGAN(GAN):
    """BiGAN / ALI (notes 6.9): D(x, z) = sigmoid(v(x, z)) on (x, E(x)) vs (G(z), z); E and G play together."""

    key = "bigan"
    title = "BiGAN — encoder + generator (ALI)"
    menu_rank = 200
    Config = BiGANConfig
    surface_mid = 0.5
    surface_label = "D(x, E(x))"
    probability = True
    divergence_label = "JS estimate of the joints (V + log 4)/2"
    equilibrium = (LOG4, LOG4)  # D: -V = log 4; E and G (flipped labels): -log(1/2) twice

    def __init__(self, cfg: BiGANConfig | None = None):
        super().__init__(cfg)
        c = self.cfg
        self.encoder = mlp(2, c.latent_dim, c.e_hidden, c.e_depth, c.activation)
        self.discriminator = mlp(2 + c.latent_dim, 1, c.d_hidden, c.d_depth, c.activation)
        self._g_params = list(self.generator.parameters()) + list(self.encoder.parameters())

    # --- the three players ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = E(x) for x in data coordinates."""
        return self.encoder(self.norm(x))

    def joint_critic(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """D's logit v(x, z), shape (n,): x in data coordinates (standardised inside), z as it is."""
        return self.discriminator(torch.cat([self.norm(x), z], 1)).squeeze(-1)

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """v(x, E(x)): how real the encoder's pair at x looks (the heatmap)."""
        return self.joint_critic(x, self.encode(x))

    def surface(self, v):
        return torch.sigmoid(v)

    def d_loss(self, v_real, v_fake):
        """-V: real pairs (x, E(x)) labelled 1, fake pairs (G(z), z) labelled 0."""
        return F.softplus(-v_real).mean() + F.softplus(v_fake).mean()

    def eg_loss(self, v_real, v_fake):
        """E's and G's loss, the flipped labels: -E log(1 - D(x, E(x))) - E log D(G(z), z)."""
        return F.softplus(v_real).mean() + F.softplus(-v_fake).mean()

    def g_loss_per_sample(self, v_fake):
        return F.softplus(-v_fake)  # G's part of eg_loss, per fake (the push arrows)

    def divergence(self, v_real, v_fake):
        """(V + log 4) / 2: JSD of the two joints at the optimal D, below it otherwise."""
        return 0.5 * (LOG4 - self.d_loss(v_real, v_fake))

    def pairs(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits of the encoder's pairs (x, E(x)) and of the generator's pairs (G(z), z)."""
        return self.joint_critic(x, self.encode(x)), self.joint_critic(self.generate(z), z)

    # --- training ------------------------------------------------------------------------------
    def configure_optimizers(self, settings) -> dict[str, torch.optim.Optimizer]:
        """"d": the discriminator; "g": the generator and the encoder together (at lr_g)."""
        self._g_params = list(self.generator.parameters()) + list(self.encoder.parameters())
        return {"d": self._optimizer(self.discriminator.parameters(), self.cfg.lr_d),
                "g": self._optimizer(self._g_params, self.cfg.lr_g)}

    def d_terms(self, real, fake, regularise: bool = True, z_fake=None, z_real=None) -> dict[str, torch.Tensor]:
        """D's loss on pairs (real, z_real = E(real)) and (fake, z_fake); R1 on the encoder's pairs."""
        gamma = self.cfg.r1
        v_real = None
        out = {}
        if regularise and gamma > 0:
            r1, v_real = r1_penalty(self.discriminator, torch.cat([self.norm(real), z_real], 1))
            out.update(penalty=0.5 * gamma * r1, r1=r1)
        if v_real is None:
            v_real = self.joint_critic(real, z_real)
        v_fake = self.joint_critic(fake, z_fake)
        return {"d_loss": self.d_loss(v_real, v_fake), **out}

    def d_step(self, real: torch.Tensor, opt: torch.optim.Optimizer, fake=None) -> dict:
        """One discriminator update on fresh pairs (E and G held), R1 lazily as the other GANs."""
        with torch.no_grad():
            z = self.prior(real.shape[0])
            fake = self.generate(z)
            z_real = self.encode(real)
        regularise = int(self.d_updates) % 4 == 0
        self.d_updates += 1
        opt.zero_grad(set_to_none=True)
        terms = self.d_terms(real, fake, regularise=regularise, z_fake=z, z_real=z_real)
        objective = terms["d_loss"] + 4 * terms.get("penalty", 0.0)
        objective.backward()
        opt.step()
        return {"d_loss": float(terms["d_loss"].detach())}

    def g_step(self, n: int, opt: torch.optim.Optimizer, real: torch.Tensor | None = None) -> dict:
        """One update of E and G together on the flipped labels. Logs the mean ||d l_G / d x|| at the fakes."""
        if real is None:  # the tab's "one G step": a fresh batch of training points
            if self._train is None:
                raise RuntimeError("BiGAN: init_from_data first (E needs real points)")
            idx = torch.randint(0, self._train.shape[0], (n,), device=self._train.device,
                                generator=self.rng("train", self._train.device))
            real = self._train[idx]
        z = self.prior(n)
        fake = self.generate(z)
        v_real = self.joint_critic(real, self.encode(real))
        v_fake = self.joint_critic(fake, z)
        loss = self.eg_loss(v_real, v_fake)
        grads = torch.autograd.grad(loss, [fake] + self._g_params)
        for p, g in zip(self._g_params, grads[1:]):
            p.grad = g
        opt.step()
        self._update_average()
        return {"g_loss": float(loss.detach()), "g_grad_norm": float(grads[0].norm(dim=1).mean() * n)}

    def step(self, x: torch.Tensor, optimizers) -> dict[str, float]:
        """k discriminator updates, then one update of E and G on the same real batch."""
        for i in range(self.cfg.d_steps):
            d = self.d_step(self._real_batch(x, i), optimizers["d"])
        g = self.g_step(x.shape[0], optimizers["g"], real=x)
        return {"loss": d["d_loss"], **d, **g}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's and (E, G)'s losses on one batch, summed so one backward reaches all three networks."""
        z = self.prior(x.shape[0], "view")
        v_real, v_fake = self.pairs(x, z)
        d = self.d_loss(v_real, v_fake)
        eg = self.eg_loss(v_real, v_fake)
        return {"loss": d + eg, "d_loss": d, "g_loss": eg}

    def value(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The game's value V(D, E, G) = E log D(x, E(x)) + E log(1 - D(G(z), z)) on samples x and z."""
        v_real, v_fake = self.pairs(x, z)
        return -self.d_loss(v_real, v_fake)

    # --- what the views and metrics need -------------------------------------------------------
    @torch.no_grad()
    def inversion_errors(self, x: torch.Tensor, z: torch.Tensor) -> tuple[float, float]:
        """(mean ||G(E(x)) - x|| in data units, mean ||E(G(z)) - z||): how far E is from G⁻¹."""
        rx = (self.generate(self.encode(x)) - x).norm(dim=1).mean()
        rz = (self.encode(self.generate(z)) - z).norm(dim=1).mean()
        return float(rx), float(rz)

    def generator_push(self, fake: torch.Tensor) -> torch.Tensor:
        """-grad_x l_G(x, z) at each tracked fake x = G(z_probe), z held: where G is pushed to move it."""
        z = self.z_probe[: fake.shape[0]]
        with torch.enable_grad():
            x = fake.detach().requires_grad_(True)
            return -torch.autograd.grad(self.g_loss_per_sample(self.joint_critic(x, z)).sum(), x)[0]

    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """The GAN's record (surface D(x, E(x)), tracked fakes, push, manifold) plus the codes E(x) of the
        shown data and reconstructions x -> G(E(x)) of some of them."""
        out = super().probe(grid, points)
        with torch.no_grad():
            codes = self.encode(points[:N_CODES])
            src = points[:N_RECON]
            rec = self.generate(self.encode(src))
        out.update(latent_codes=codes[:, :2].float().cpu().numpy(), reconstructions=rec.float().cpu().numpy(),
                   recon_from=src.float().cpu().numpy())
        return out

    @torch.inference_mode()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """The joint JS estimate, the histogram JS of G's samples, and the two inversion errors."""
        n = x_test.shape[0]
        z = self.prior(max(n, 2000), "view")
        v_real, v_fake = self.pairs(x_test, z)
        fake = self.generate(z, self.shown)
        rx, rz = self.inversion_errors(x_test, z)
        return {"divergence": float(self.divergence(v_real, v_fake)),
                "hist_js": histogram_js(x_test, fake, self.hist_box), "recon_x": rx, "recon_z": rz}


__all__ = ["BiGAN", "BiGANConfig"]
