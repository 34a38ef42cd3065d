"""The time-conditioned network of the diffusion family, with its exact Jacobian by forward mode.

``TimeMLP(x, t)`` maps points x (n, 2) and times t (n,) to a 2-vector per point (a noise prediction ε̂ or a
velocity v). Time enters through fixed Fourier features of t (Tancik et al. 2020; the sinusoidal embedding of
Ho et al. 2020 in its continuous form) concatenated to x, so one batch mixes every noise level.

:meth:`TimeMLP.with_jacobian` also returns J = ∂out/∂x (n, 2, 2), pushed forward through the layers with the
activations' derivatives (two tangents per point, about three times a forward pass): the probability-flow ODE's
exact divergence tr J (notes 5.1's change of variables in continuous form needs it; in 2D the trace is two
entries, so no Hutchinson estimator and no noise). tests/test_diffusion.py checks J against autograd.
"""

from __future__ import annotations

import math

import torch
from torch import nn

N_FREQ = 8  # Fourier features of t: a sine and a cosine at each of 8 frequencies (see time_features)


def time_features(t: torch.Tensor) -> torch.Tensor:
    """(n,) times in [0, 1] -> (n, 2·N_FREQ) features sin(ω_k t), cos(ω_k t) with ω_k = π·2^k/2 for k = 0..N_FREQ-1
    (periods from 4 down to 1/32 of the unit interval: smooth in t, yet able to tell t = 0.01 from 0.02)."""
    w = math.pi / 2 * 2.0 ** torch.arange(N_FREQ, device=t.device, dtype=t.dtype)
    a = t[:, None] * w
    return torch.cat([torch.sin(a), torch.cos(a)], 1)


class TimeMLP(nn.Module):
    """[x, features(t)] -> SiLU hidden layers -> 2 outputs. SiLU is smooth, so the ODE's field and its divergence
    are continuous (a ReLU field's divergence jumps across every kink)."""

    def __init__(self, hidden: int = 128, depth: int = 3):
        super().__init__()
        dims = [2 + 2 * N_FREQ] + [hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], 2)
        nn.init.zeros_(self.out.weight)  # starts as the zero field: its first samples are the prior's
        nn.init.zeros_(self.out.bias)

    def _input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[x, features(t)]; a 0-d t (one time for every point: the samplers, the ODE) has its features made once."""
        if t.dim() == 0:
            return torch.cat([x, time_features(t.reshape(1).to(x.dtype)).expand(x.shape[0], -1)], 1)
        return torch.cat([x, time_features(t.to(x.dtype))], 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self._input(x, t)
        for layer in self.hidden:
            h = nn.functional.silu(layer(h))
        return self.out(h)

    def with_jacobian(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(out (n, 2), J (n, 2, 2)) with J[i, a, b] = ∂out_a/∂x_b at point i: forward-mode differentiation. The
        tangents of x's two coordinates ride under the values as 2n more rows, so each layer is one matrix
        product of 3n rows (the bias only on the values' rows): about three forward passes' work."""
        n = x.shape[0]
        h = self._input(x, t)
        tan = None
        for layer in self.hidden:
            if tan is None:  # the first layer: ∂pre/∂x is its weight's columns of x; row 2i+b holds ∂pre_i/∂x_b
                pre = layer(h)
                tan = layer.weight[:, :2].t().unsqueeze(0).expand(n, 2, -1).reshape(2 * n, -1)
            else:
                both = torch.cat([h, tan]) @ layer.weight.t()
                pre, tan = both[:n] + layer.bias, both[n:]
            sig = torch.sigmoid(pre)
            h = pre * sig
            tan = (tan.view(n, 2, -1) * (sig * (1 + pre * (1 - sig))).unsqueeze(1)).view(2 * n, -1)  # SiLU'(pre)
        both = torch.cat([h, tan]) @ self.out.weight.t()
        jac = both[n:].reshape(n, 2, 2).transpose(1, 2)  # [i, a (output), b (input)]
        return both[:n] + self.out.bias, jac
