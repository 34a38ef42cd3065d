"""Per-point variational inference for the VAE view (notes 4.4.1): refine one point's q(z|x) by gradient steps on
that point's own ELBO, starting from the encoder's q, and split the inference gap into its two parts (Cremer et al.
2018):

    log p(x) − ELBO(q_enc) = [log p(x) − ELBO(q*)]  +  [ELBO(q*) − ELBO(q_enc)]
                              approximation gap        amortisation gap

where q* is the best diagonal Gaussian for this x (what stochastic variational inference, SVI, finds without an
encoder) and q_enc the encoder's (amortised) guess. The ELBO is the view's own quadrature on the latent grid
(playground/views/latent.py, point_elbo): E_q[log p(x|z)] as a sum over the grid's nodes with q's normalised
weights, the KL(q ‖ N(0, I)) in closed form. Its gradient is therefore exact for that sum:

    ∂/∂θ Σ_j q̃_j a_j = Cov_q̃(a, ∂ℓ/∂θ),  ℓ_j = −½ Σ_d ((z_jd − m_d)/s_d)²,  a_j = log p(x | z_j),

with ∂ℓ/∂m_d = (z_d − m_d)/s_d² and ∂ℓ/∂log s_d = ((z_d − m_d)/s_d)². Each step is gradient ascent in
(m, log s) with backtracking: a step that would lower the ELBO is halved until it does not, so the ELBO never falls.
s stays at least half the grid's spacing (narrower, the grid cannot resolve q and the sum is no ELBO).

Numpy only: it runs in the web process on the probe's arrays.
"""

from __future__ import annotations

import numpy as np

ITERATIONS = 150
MIN_STEP = 1e-6


def elbo(nodes: np.ndarray, recon: np.ndarray, m: np.ndarray, log_s: np.ndarray) -> float:
    """The grid ELBO of q = N(m, diag s²): Σ_j q̃_j log p(x|z_j) − KL(q ‖ N(0, I)) (recon_j = log p(x|z_j))."""
    return _value_and_grad(nodes, recon, m, log_s)[0]


def _value_and_grad(nodes, recon, m, log_s):
    s = np.exp(log_s)
    u = (nodes - m) / s  # (J, d)
    ell = -0.5 * (u ** 2).sum(1)
    w = np.exp(ell - ell.max())
    w /= w.sum()
    ea = float(w @ recon)
    kl = 0.5 * float(np.sum(m ** 2 + s ** 2 - 1.0 - 2.0 * log_s))
    da = recon - ea
    g_m = (w * da) @ (u / s) - m
    g_ls = (w * da) @ (u ** 2) - (s ** 2 - 1.0)
    return ea - kl, g_m, g_ls


def refine(nodes: np.ndarray, recon: np.ndarray, m0: np.ndarray, s0: np.ndarray, spacing: float,
           iterations: int = ITERATIONS) -> dict[str, np.ndarray | float]:
    """Gradient ascent on the point's grid ELBO from the encoder's (m0, s0).

    Args:
        nodes: (J, d) the latent grid's nodes; recon: (J,) log p(x | z_j) there.
        m0, s0: (d,) the encoder's q(z|x); spacing: the grid's node spacing (s is kept ≥ spacing/2).

    Returns:
        m, s: the refined q's parameters; path: (iterations + 1,) the ELBO after each step (non-decreasing).
    """
    nodes, recon = np.asarray(nodes, np.float64), np.asarray(recon, np.float64)
    m, log_s = np.asarray(m0, np.float64).copy(), np.log(np.maximum(np.asarray(s0, np.float64), 0.5 * spacing))
    floor = np.log(0.5 * spacing)
    value, g_m, g_ls = _value_and_grad(nodes, recon, m, log_s)
    path, step = [value], 0.1
    for _ in range(iterations):
        while step > MIN_STEP:
            m_new, ls_new = m + step * g_m, np.maximum(log_s + step * g_ls, floor)
            v_new, gm_new, gls_new = _value_and_grad(nodes, recon, m_new, ls_new)
            if v_new >= value:
                m, log_s, value, g_m, g_ls = m_new, ls_new, v_new, gm_new, gls_new
                step *= 1.5
                break
            step *= 0.5
        path.append(value)
    return {"m": m, "s": np.exp(log_s), "path": np.asarray(path)}
