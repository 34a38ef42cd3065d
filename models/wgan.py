"""Wasserstein GANs (notes 6.8): a critic f estimates W1(p, q) in its Kantorovich-Rubinstein dual form

    W1(p, q) = sup_{||f||_L <= 1} E_p[f(x)] - E_q[f(x)],

and the generator minimises -E_q[f(G(z))]. Two ways to keep the critic (about) Lipschitz:

* **WGAN** (Arjovsky, Chintala & Bottou 2017): clip every critic weight to [-c, c] after each critic
  step, train with RMSprop and k = 5 critic steps per generator step. Clipping bounds the Lipschitz
  constant by some unknown K, so the critic gap estimates K * W1.
* **WGAN-GP** (Gulrajani et al. 2017): add lambda E[(||grad_x f(x_hat)||_2 - 1)^2] at random points
  x_hat = eps x + (1 - eps) x_fake between real and fake pairs; Adam with beta1 = 0.5 (or 0) and
  beta2 = 0.9. The critic gap then estimates W1 itself.

References:
    Arjovsky, Chintala & Bottou (2017), Wasserstein generative adversarial networks.
    Gulrajani et al. (2017), Improved training of Wasserstein GANs (algorithm 1, eq. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import hp, register
from .gan import GAN, GANConfig


@dataclass
class WGANConfig(GANConfig):
    lr_g: float = hp(5e-4, 1e-5, 0.1, log=True, live=True, label="generator learning rate",
                     help="G's step size; can be changed while training runs")
    lr_d: float = hp(5e-4, 1e-5, 0.1, log=True, live=True, label="critic learning rate",
                     help="the critic's step size; can be changed while training runs")
    optimizer: str = hp("rmsprop", choices=("rmsprop", "adam", "sgd"), label="optimizer",
                        help="RMSprop, as in the WGAN paper (momentum makes clipped critics unstable)")
    d_steps: int = hp(5, 1, 10, live=True, label="critic steps per G step (k)")
    clip: float = hp(0.05, 1e-3, 1.0, log=True, live=True, label="weight clip c",
                     help="every critic weight is clipped to [-c, c] after each critic step")


@dataclass
class WGANGPConfig(GANConfig):
    lr_g: float = hp(1e-3, 1e-5, 0.1, log=True, live=True, label="generator learning rate",
                     help="G's step size; can be changed while training runs")
    lr_d: float = hp(1e-3, 1e-5, 0.1, log=True, live=True, label="critic learning rate",
                     help="the critic's step size; can be changed while training runs")
    beta1: float = hp(0.5, 0.0, 0.95, step=0.05, label="Adam β₁", help="0.5 or 0 (Gulrajani et al.)")
    beta2: float = hp(0.9, 0.5, 0.999, step=0.001, label="Adam β₂")
    d_steps: int = hp(5, 1, 10, live=True, label="critic steps per G step (k)")
    gp_weight: float = hp(10.0, 0.0, 100.0, step=0.5, live=True, label="gradient penalty λ",
                          help="weight of E[(‖∇ₓf(x̂)‖ − 1)²]")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None):
    """WGAN-GP's penalty E[(||grad_x f(x_hat)||_2 - 1)^2] on x_hat = eps x + (1 - eps) x_fake,
    eps ~ U[0, 1] per pair (Gulrajani et al. 2017, eq. 3). Returns (penalty, gradient norms);
    the graph is kept (create_graph) so the penalty trains the critic."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    norms = grad.norm(dim=1)
    return ((norms - 1) ** 2).mean(), norms



class _Wasserstein(GAN):
    surface_mid = None

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
    """WGAN-GP (Gulrajani et al. 2017): the critic loss plus lambda E[(||grad f(x_hat)|| - 1)^2]."""

    key = "wgan_gp"
    title = "WGAN-GP — gradient penalty"
    Config = WGANGPConfig

    def d_terms(self, real, fake, eps: torch.Tensor | None = None):
        # a separate forward for x_hat: fusing it with [real, fake] made the double backward
        # run over all 3n rows, 1.45x slower here
        terms = super().d_terms(real, fake)
        gp, norms = gradient_penalty(self.critic, real, fake, eps)
        return {"d_loss": terms["d_loss"] + self.cfg.gp_weight * gp, "gp": gp,
                "critic_grad_norm": norms.mean().detach()}


