"""The objectives that train an energy-based model p_θ(x) = exp(f_θ(x)) / Z(θ) (notes ch. 7).

Written as plain functions of an energy ``f`` ((n, d) -> (n,)) so they can be tested on energies
whose answer is known in closed form (a Gaussian's quadratic energy), and reused by the models of
models/ebm/model.py.

* :func:`contrastive_divergence` (notes 7.3): the gradient of the log-likelihood is
  ∇θ f(x_train) − E_{x~p_θ}[∇θ f(x)]; the loss f(x_sample) − f(x_train) has exactly that gradient
  (negated, as it is minimised) when the samples are held fixed.
* :func:`exact_score_matching` (notes 7.4): the Fisher divergence, after integration by parts,
  E[½‖∇ₓf‖² + tr(∇²ₓf)] — with the Hessian trace computed exactly, one backward pass per dimension
  (cheap in 2D, d passes in d dimensions: why the next two exist).
* :func:`sliced_score_matching` (Song et al. 2019, SSM-VR): tr(∇²f) replaced by vᵀ∇²f v for random
  v with E[vvᵀ] = I — one Hessian-vector product per projection, whatever the dimension.
* :func:`denoising_score_matching` (Vincent 2011): match the score of data blurred by N(0, σ²I),
  whose conditional score −(x̃ − x)/σ² is known; no Hessian at all, but it learns the blurred data.
* :func:`nce_loss` (notes 7.5): logistic regression of data against noise with the discriminator
  D = exp(f) / (exp(f) + ν Z p_n), in the notes' logsumexp form, with log Z a free parameter.

References:
    Hyvärinen (2005), Estimation of non-normalized statistical models by score matching.
    Vincent (2011), A connection between score matching and denoising autoencoders.
    Song, Garg, Shi & Ermon (2019), Sliced score matching.
    Gutmann & Hyvärinen (2010), Noise-contrastive estimation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Energy = Callable[[torch.Tensor], torch.Tensor]


def contrastive_divergence(f_data: torch.Tensor, f_samples: torch.Tensor) -> torch.Tensor:
    """E[f(x_sample)] − E[f(x_train)]: minimising it ascends the log-likelihood (notes 7.3)."""
    return f_samples.mean() - f_data.mean()


def _score(f: Energy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x with requires_grad, and ∇ₓf(x) kept in the graph (create_graph) so θ gets gradients."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return x, g


def exact_score_matching(f: Energy, x: torch.Tensor) -> torch.Tensor:
    """Hyvärinen's objective E[½‖∇ₓf(x)‖² + tr(∇²ₓf(x))] over the batch (notes 7.4, last equation)."""
    x, g = _score(f, x)
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(x.shape[1]):  # the Hessian's diagonal, one row at a time
        (row,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)
        trace = trace + row[:, i]
    return (0.5 * (g ** 2).sum(1) + trace).mean()


def sliced_score_matching(f: Energy, x: torch.Tensor, n_projections: int = 1,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """SSM-VR: E_v[½‖∇ₓf‖² + vᵀ ∇²ₓf v] with v ~ N(0, I), so E[vᵀHv] = tr(H) (Song et al. 2019)."""
    x = x.repeat(n_projections, 1)
    x, g = _score(f, x)
    v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=True)
    return (0.5 * (g ** 2).sum(1) + (hv * v).sum(1)).mean()


def denoising_score_matching(f: Energy, x: torch.Tensor, sigma: float,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """½ E‖∇ₓf(x̃) + (x̃ − x)/σ²‖² with x̃ = x + σε (Vincent 2011): the score of the blurred data."""
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    _, g = _score(f, x + sigma * eps)
    return 0.5 * ((g + eps / sigma) ** 2).sum(1).mean()


def gaussian_log_prob(x: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; 0, std² I): NCE's noise distribution p_n."""
    d = x.shape[1]
    return -0.5 * (x ** 2).sum(1) / std ** 2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def nce_loss(f_data: torch.Tensor, f_noise: torch.Tensor, log_pn_data: torch.Tensor,
             log_pn_noise: torch.Tensor, log_z: torch.Tensor, noise_ratio: int = 1) -> torch.Tensor:
    """The negated NCE objective in the notes' logsumexp form (notes 7.5), with ν noise samples per
    data point (ν = 1 in the notes):

        log D(x)     = f(x) − logsumexp(f(x), log ν + log Z + log p_n(x))
        log(1 − D(y)) = log ν + log Z + log p_n(y) − logsumexp(f(y), log ν + log Z + log p_n(y))

    loss = −( mean_x log D(x) + ν · mean_y log(1 − D(y)) ). At the optimum exp(f)/Z is the data
    density and Z the partition function."""
    log_nu = math.log(noise_ratio)
    c_data = log_nu + log_z + log_pn_data
    c_noise = log_nu + log_z + log_pn_noise
    log_d = f_data - torch.logaddexp(f_data, c_data)
    log_1md = c_noise - torch.logaddexp(f_noise, c_noise)
    return -(log_d.mean() + noise_ratio * log_1md.mean())
