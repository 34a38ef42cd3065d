"""Small networks shared by the families: a plain MLP and MADE's masked layers (notes 3.1.4)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU,
               "leaky_relu": lambda: nn.LeakyReLU(0.2), "softplus": nn.Softplus}


def mlp(d_in: int, d_out: int, hidden: int = 64, layers: int = 2, act: str = "relu") -> nn.Sequential:
    """d_in -> [hidden]*layers -> d_out, with `act` between layers and a linear output."""
    dims = [d_in] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), ACTIVATIONS[act]()]
    mods.append(nn.Linear(dims[-1], d_out))
    return nn.Sequential(*mods)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, notes 3.1.4)."""

    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor):
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def made_degrees(dim: int, hidden: int, layers: int, order: list[int] | None = None):
    """MADE's labels: inputs get their position in `order` (1..dim); each hidden unit a label in
    1..dim-1 (cycled, so every label is present); notes 3.1.4."""
    order = list(range(1, dim + 1)) if order is None else list(order)
    inp = torch.tensor(order)
    hid = [torch.arange(hidden) % max(dim - 1, 1) + 1 for _ in range(layers)]
    return inp, hid


def made_masks(dim: int, hidden: int, layers: int, out_mult: int, order: list[int] | None = None):
    """The masks of a MADE with `layers` hidden layers and out_mult outputs per input.

    A hidden unit with label k sees inputs with label <= k; an output for input i sees hidden units
    with label < label(i), so output i depends only on inputs earlier in the order."""
    inp, hid = made_degrees(dim, hidden, layers, order)
    masks = []
    prev = inp
    for h in hid:
        masks.append((h[:, None] >= prev[None, :]).float())
        prev = h
    out = inp.repeat(out_mult)
    masks.append((out[:, None] > prev[None, :]).float())
    return masks


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015; notes 3.1.4).

    Maps x of shape (n, dim) to (n, out_mult, dim): out[:, j, i] depends only on x_<i in `order`.
    """

    def __init__(self, dim: int = 2, hidden: int = 64, layers: int = 2, out_mult: int = 2,
                 act: str = "relu", order: list[int] | None = None):
        super().__init__()
        self.dim, self.out_mult = dim, out_mult
        masks = made_masks(dim, hidden, layers, out_mult, order)
        sizes = [dim] + [hidden] * layers + [dim * out_mult]
        mods: list[nn.Module] = []
        for i, m in enumerate(masks):
            mods.append(MaskedLinear(sizes[i], sizes[i + 1], m))
            if i < len(masks) - 1:
                mods.append(ACTIVATIONS[act]())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.out_mult, self.dim)
