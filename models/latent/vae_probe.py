"""What the VAE's views draw, computed from the model in one pass (numpy out, no plotting here).

* the encoder's q(z|x) = N(m(x), diag s(x)^2) for the shown data points (the latent-space panel), and the
  aggregate posterior q(z) = 1/n sum_i q(z|x_i) on a latent display grid, to compare with the prior;
* the decoder manifold: latent grid lines (2D) or the latent axis (1D) through the decoder mean;
* the decoder on the quadrature nodes, with their prior weights: from these the view computes, for any
  chosen data point, the true posterior p(z|x) = w_j p(x|z_j) / p(x) on the grid next to q(z|x), that
  point's ELBO and KL(q || p(z|x)) = log p(x) - ELBO by the same quadrature (the inference gap: the
  approximation gap plus the amortisation gap, notes 4.3.4 and 4.4.5, Cremer et al. 2018), and the
  naive Monte Carlo vs importance sampling estimates of p(x) (notes 4.3.2-4.3.3) - all with numpy, so
  moving the point slider costs no model evaluation. These use the shared latent grid; where it is too
  coarse for a point's posterior (small decoder sigma) the view says its numbers are rough.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DISPLAY_BOX = 4.0  # the latent panels show [-4, 4]^d
DISPLAY_RES = 81
MANIFOLD_LINES = 13
MANIFOLD_RES = 81


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _normal_pdf(axis: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """N(axis_k; m_i, s_i^2) as (n, len(axis))."""
    z = (axis[None, :] - m[:, None]) / s[:, None]
    return torch.exp(-0.5 * z ** 2) / (s[:, None] * math.sqrt(2 * math.pi))


def aggregate_posterior(m: torch.Tensor, s: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """q(z) = 1/n sum_i N(z; m_i, diag s_i^2) on the display grid: (len,) in 1D, (len, len) [z2, z1] in 2D,
    where each Gaussian factorises, so the 2D sum is one matrix product."""
    a = _normal_pdf(axis, m[:, 0], s[:, 0])
    if m.shape[1] == 1:
        return a.mean(0)
    b = _normal_pdf(axis, m[:, 1], s[:, 1])
    return b.T @ a / m.shape[0]


def manifold(model, device) -> dict[str, np.ndarray]:
    """The decoder mean along latent grid lines (2D: lines of constant z1 and of constant z2) or along
    the latent axis (1D), in data coordinates."""
    t = torch.linspace(-3.5, 3.5, MANIFOLD_RES, device=device)
    if model.cfg.latent_dim == 1:
        mu, log_sig = model.decode(t[:, None])
        return {"curve_z": _np(t), "curve_x": _np(model.std.inverse(mu)),
                "curve_sigma": _np(torch.exp(log_sig) * model.std.scale)}
    levels = torch.linspace(-3.0, 3.0, MANIFOLD_LINES, device=device)
    L, R = len(levels), len(t)
    const_z1 = torch.stack([levels[:, None].expand(L, R), t[None, :].expand(L, R)], -1)  # z1 fixed per line
    const_z2 = torch.stack([t[None, :].expand(L, R), levels[:, None].expand(L, R)], -1)
    mu, _ = model.decode(torch.cat([const_z1, const_z2]).reshape(-1, 2))
    x = model.std.inverse(mu).reshape(2, L, R, 2)
    return {"lines_z1": _np(x[0]), "lines_z2": _np(x[1]), "line_levels": _np(levels)}


@torch.no_grad()
def probe_vae(model, points: torch.Tensor) -> dict[str, np.ndarray]:
    dev = points.device
    m, s = model.encode(model.std(points))
    axis = torch.linspace(-DISPLAY_BOX, DISPLAY_BOX, DISPLAY_RES, device=dev)
    quad = model.quadrature()
    mu, log_sig, sg = quad["mu"], quad["log_sig"], quad["grid"]
    out = {"enc_mean": _np(m), "enc_std": _np(s), "latent_axis": _np(axis),
           "aggregate": _np(aggregate_posterior(m, s, axis)),
           "nodes": _np(quad["nodes"]), "node_log_w": _np(sg.log_w),
           "node_mean": _np(model.std.inverse(mu)), "node_sigma": _np(torch.exp(log_sig) * model.std.scale),
           "nodes_per_axis": np.int32(sg.per_axis), "node_spacing": np.float32(quad["spacing"]),
           "latent_box": np.float32(model.latent.box), "quad_check": np.float32(quad["check"]),
           "finer_at_rest": np.bool_(quad["finer_at_rest"])}
    out.update(manifold(model, dev))
    out.update(latent_dim=np.int32(model.cfg.latent_dim), k=np.int32(model.cfg.k),
               iwae_objective=np.bool_(model.training_on_iwae))
    return out
