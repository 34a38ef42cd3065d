"""Wasserstein GANs (notes 6.8): a critic f estimates W1(p, q) in its Kantorovich-Rubinstein dual form

    W1(p, q) = inf_{gamma in Pi(p, q)} E_gamma ||x - y|| = sup_{||f||_L <= 1} E_p[f(x)] - E_q[f(x)],

and the generator minimises -E_q[f(G(z))]. Two ways to keep the critic (about) Lipschitz:

* **WGAN** (Arjovsky, Chintala & Bottou 2017): clip every critic weight to [-c, c] after each critic
  step, train with RMSprop and k = 5 critic steps per generator step. Clipping bounds the Lipschitz
  constant by some unknown K, so the critic gap estimates K * W1.
* **WGAN-GP** (Gulrajani et al. 2017): add lambda E[(||grad_x f(x_hat)||_2 - 1)^2] at random points
  x_hat = eps x + (1 - eps) x_fake between real and fake pairs (eq. 3). The critic gap then estimates W1.

**The transport cost is Euclidean.** The notes (6.8) write the cost as ||x - y||_1, whose dual constraint
is |f(x) - f(y)| <= ||x - y||_1, i.e. ||grad f||_inf <= 1 (the dual norm of L1). Arjovsky et al. and
Gulrajani et al. use the Euclidean cost ||x - y||_2, whose dual norm is L2 again: the penalty on
||grad f||_2 here. We follow the papers, so the critic gap estimates W1 with the L2 cost (in data
coordinates); in 2D the two distances bracket each other, W1_L2 <= W1_L1 <= sqrt(2) W1_L2, since
||v||_2 <= ||v||_1 <= sqrt(2) ||v||_2 (two point masses (3, 4) apart: 5 with L2, 7 with L1).

Defaults (25 Gaussians, 3,000 steps; before: seeds 0-1, after: seeds 0-3). WGAN-GP with lambda = 1, k = 2
critic steps and the common GANConfig's Adam (beta = (0, 0.9), lr_d 2e-3, lr_g 4e-3) covers 24-25 modes, at
about 2.2x the steps per second of the former lambda = 10, k = 5, lr 1e-3, beta1 = 0.5, which covered 6-12.
The mean ||grad f(x_hat)|| then ends at 1.02-1.07, so the gap still estimates W1 near the end; early on,
with p and q far apart, the soft penalty lets the gap over-estimate it (two point masses D apart: slope
1 + D/(2 lambda), gap D + D^2/(2 lambda)). Gulrajani et al.'s released code for the 2D sets (gan_toy.py)
takes lambda = 0.1 ("smaller lambda makes things faster for toy tasks"): a unit-slope critic changes by
at most 0.3 within 3 std of a mode of std 0.1, too faint a push for G at lambda = 10.
Weight clipping covers 16-21 (lr_d 1e-3, lr_g 2e-3, c = 0.1; the former 5e-4 and c = 0.05: 8-11):
clipping pushes the critic towards simple functions (Gulrajani et al. 2017, fig. 1), a failure the tab
shows on purpose.

References:
    Arjovsky, Chintala & Bottou (2017), Wasserstein generative adversarial networks.
    Gulrajani et al. (2017), Improved training of Wasserstein GANs (algorithm 1, eq. 3; fig. 1).
    Villani (2009), Optimal transport, old and new (Kantorovich-Rubinstein duality, any metric cost).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import hp, register
from .gan import GAN, GANConfig


@dataclass
class WGANConfig(GANConfig):
    lr_g: float = hp(2e-3, 1e-5, 0.1, log=True, live=True, label="generator learning rate",
                     help="G's step size; can be changed while training runs")
    lr_d: float = hp(1e-3, 1e-5, 0.1, log=True, live=True, label="critic learning rate",
                     help="the critic's step size; can be changed while training runs")
    optimizer: str = hp("rmsprop", choices=("rmsprop", "adam", "sgd"), label="optimizer",
                        help="RMSprop, as in the WGAN paper (momentum makes clipped critics unstable)")
    d_steps: int = hp(5, 1, 10, live=True, label="critic steps per G step (k)")
    clip: float = hp(0.1, 1e-3, 1.0, log=True, live=True, label="weight clip c",
                     help="every critic weight is clipped to [-c, c] after each critic step")


@dataclass
class WGANGPConfig(GANConfig):
    lr_d: float = hp(2e-3, 1e-5, 0.1, log=True, live=True, label="critic learning rate",
                     help="the critic's step size; can be changed while training runs")
    beta1: float = hp(0.0, 0.0, 0.95, step=0.05, label="Adam β₁", help="0 or 0.5 (Gulrajani et al.)")
    d_steps: int = hp(2, 1, 10, live=True, label="critic steps per G step (k)",
                      help="Gulrajani et al. take 5; 2 covers as many modes here at 2.5x the speed")
    gp_weight: float = hp(1.0, 0.0, 100.0, step=0.1, live=True, label="gradient penalty λ",
                          help="weight of E[(‖∇ₓf(x̂)‖₂ − 1)²]: Euclidean transport cost (see the text); "
                               "Gulrajani et al. take 10 on images, 0.1 in their 2D code")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None,
                     generator: torch.Generator | None = None):
    """WGAN-GP's penalty E[(||grad_x f(x_hat)||_2 - 1)^2] on x_hat = eps x + (1 - eps) x_fake,
    eps ~ U[0, 1] per pair (Gulrajani et al. 2017, eq. 3). Returns (penalty, gradient norms);
    the graph is kept (create_graph) so the penalty trains the critic. The norm is Euclidean: the
    constraint ||f||_L <= 1 for the transport cost ||x - y||_2 (the notes' L1 cost would need
    ||grad f||_inf; see the module docstring)."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    norms = grad.norm(dim=1)
    return ((norms - 1) ** 2).mean(), norms


class _Wasserstein(GAN):
    surface_mid = None
    surface_label = "critic f(x)"
    wasserstein = True

    def d_loss(self, v_real, v_fake):
        return v_fake.mean() - v_real.mean()

    def g_loss_per_sample(self, v_fake):
        return -v_fake

    def divergence(self, v_real, v_fake):
        """E_p f - E_q f: the Kantorovich-Rubinstein dual (notes 6.8) at the current critic."""
        return v_real.mean() - v_fake.mean()


@register
class WGAN(_Wasserstein):
    """WGAN with weight clipping (notes 6.8): the critic's weights stay in [-c, c], which bounds its
    Lipschitz constant by some K, so the critic gap estimates K * W1, not W1 itself."""

    key = "wgan"
    title = "WGAN — weight clipping"
    divergence_label = "critic gap E_p f − E_q f (∝ W₁: clipping bounds the slope by an unknown K)"
    Config = WGANConfig

    @torch.no_grad()
    def after_d_step(self) -> None:
        c = self.cfg.clip
        for p in self.discriminator.parameters():
            p.clamp_(-c, c)

    @torch.no_grad()
    def init_from_data(self, x):
        super().init_from_data(x)
        self.after_d_step()  # the critic starts inside the constraint set


@register
class WGANGP(_Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): the critic loss plus lambda E[(||grad f(x_hat)||_2 - 1)^2];
    the critic gap estimates W1 with the Euclidean cost (module docstring)."""

    key = "wgan_gp"
    in_compare = True  # a representative of its family in a comparison
    title = "WGAN-GP — gradient penalty"
    divergence_label = "critic gap E_p f − E_q f ≈ W₁ (Euclidean cost; over-estimates while ‖∇f‖ > 1)"
    Config = WGANGPConfig

    def d_terms(self, real, fake, regularise: bool = True, eps: torch.Tensor | None = None):
        """The critic's loss E_q f − E_p f ("d_loss", the curve) and the penalty λ·gp added to it for the
        update ("penalty"), with gp and the mean gradient norm at x̂ logged."""
        # a separate forward for x_hat: fusing it with [real, fake] made the double backward
        # run over all 3n rows, 1.45x slower here
        terms = super().d_terms(real, fake)
        if not regularise:
            return terms
        gp, norms = gradient_penalty(self.critic, real, fake, eps, self.rng("train", real.device))
        return {**terms, "penalty": self.cfg.gp_weight * gp, "gp": gp, "critic_grad_norm": norms.mean().detach()}


