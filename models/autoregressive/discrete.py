"""Discrete autoregressive models of 2D data: FVSBN, NADE and MADE over K x K bins (notes 3.1).

The chain rule (notes 3.1) writes any joint as p(x1, x2) = p(x1) p(x2 | x1) — or, in the other order,
p(x2) p(x1 | x2). Here each coordinate is quantised into K bins over a box fitted to the training
data, so both factors are categorical distributions over K values (the softmax outputs of notes
3.1.3), and the probability of every one of the K^2 cells is exact: one small forward pass over the K
bins of the first variable gives the whole table log P(i, j) (:meth:`DiscreteAutoregressive.log_table`).

The three models differ only in how the second conditional's logits depend on the first variable,
which enters as its bin centre scaled to [-1, 1] (an ordinal input: neighbouring bins look alike):

* **FVSBN** (notes 3.1.1): softmax regression, logits = b + a * x_first (the categorical version of
  sigma(alpha_0 + alpha_1 x_1)). Log-odds linear in x_first: a rigid family.
* **NADE** (notes 3.1.2-3.1.3): one sigmoid hidden layer with weights tied across the conditionals,
  h_i = sigma(W_{<i} x_{<i} + c), logits_i = A_i h_i + b_i.
* **MADE** (notes 3.1.4): a masked MLP (models.nets.MADE) whose masks let output i see x_<i only.

**Densities, not probabilities.** A model over bins defines the piecewise-constant density "pick a
cell, then a uniform point inside it" (which is what :meth:`sample` does), whose log-density is

    log p(x) = log P(bin(x)) - log(bin area),

so held-out NLLs are in nats per unit area and compare with continuous models (RNADE, flows, MoG).
Points outside the box have no bin: a tiny floor keeps their density finite — the model is the
mixture (1 - FLOOR) * p_bins + FLOOR * q with q a broad Gaussian around the box, a proper density
(it still integrates to 1) that costs log(1 - FLOOR) ~ 1e-4 nats inside the box.

References:
    Frey (1998), Graphical models for machine learning and digital communication (FVSBN).
    Larochelle & Murray (2011), The neural autoregressive distribution estimator.
    Uria, Murray & Larochelle (2013), RNADE: the real-valued neural autoregressive density estimator.
    Germain, Gregor, Murray & Larochelle (2015), MADE: masked autoencoder for distribution estimation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..base import BaseConfig, Model2D, hp, register
from ..nets import MADE, made_degrees

ORDERS = ("x1_first", "x2_first")
FLOOR = 1e-4  # weight of the broad Gaussian that gives points outside the box a finite density
SHOW_UNITS = 12  # hidden units drawn per layer in the connectivity picture


def order_field():
    return hp("x1_first", choices=ORDERS, label="variable order",
              help="x1_first: p(x1)·p(x2|x1); x2_first: p(x2)·p(x1|x2) — the same chain rule, another model")


def first_second(order: str) -> tuple[int, int]:
    """The coordinates (first, second) of the factorisation p(x_first) p(x_second | x_first)."""
    return (0, 1) if order == "x1_first" else (1, 0)


def binned_log_prob(log_pmf: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, x: torch.Tensor,
                    first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """log P(bin(x)) - log(bin area): the density of a K x K cell distribution, in nats per unit area.

    Args:
        log_pmf: (K, K) log-probabilities indexed [bin of x_first, bin of x_second].
        lo, hi: (2,) the box the bins tile.
        x: (n, 2) points.
        first: which coordinate indexes the table's rows.

    Returns:
        (log-density (n,), inside (n,) bool); outside the box the log-density is -inf.
    """
    K = log_pmf.shape[0]
    width = (hi - lo) / K
    inside = ((x >= lo) & (x <= hi)).all(1)
    idx = ((x - lo) / width).floor().long().clamp(0, K - 1)
    lp = log_pmf[idx[:, first], idx[:, 1 - first]] - torch.log(width).sum()
    return torch.where(inside, lp, torch.full_like(lp, -math.inf)), inside


@dataclass
class DiscreteConfig(BaseConfig):
    K: int = hp(32, 8, 64, label="bins K per coordinate",
                help="each coordinate is cut into K bins over the data's box: K² cells in all")
    order: str = order_field()


class DiscreteAutoregressive(Model2D):
    """Base of the discrete models: the box, the bins, the exact table, the floor and sampling.

    A subclass implements :meth:`logits`: for scaled first-variable values u (m,), the logits of
    p(x_first) (K,) and of p(x_second | x_first = u) (m, K).
    """

    family = "autoregressive"
    density = "exact"
    probe_kind = "autoregressive"
    Config = DiscreteConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.first, self.second = first_second(self.cfg.order)
        # the box the bins tile, fitted to the training data in init_from_data (buffers: saved with the model)
        self.register_buffer("lo", torch.full((2,), -4.0))
        self.register_buffer("hi", torch.full((2,), 4.0))

    # --- bins -----------------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """The box: the training data's min/max per coordinate, padded by 10% of its span (plus 2% of
        the larger span, so a flat coordinate still gets a box), so held-out points rarely fall outside."""
        lo, hi = x.min(0).values, x.max(0).values
        span = hi - lo
        pad = 0.1 * span + 0.02 * span.max() + 1e-3
        self.lo.copy_(lo - pad)
        self.hi.copy_(hi + pad)

    @property
    def K(self) -> int:
        return self.cfg.K

    def width(self) -> torch.Tensor:
        return (self.hi - self.lo) / self.K

    def log_bin_area(self) -> torch.Tensor:
        return torch.log(self.width()).sum()

    def edges(self) -> torch.Tensor:
        """(2, K+1) bin edges of x1 and x2 in data coordinates."""
        t = torch.linspace(0, 1, self.K + 1, device=self.lo.device)
        return self.lo[:, None] + (self.hi - self.lo)[:, None] * t[None]

    def scaled_centres(self) -> torch.Tensor:
        """The K bin centres as the nets see them, in [-1, 1] whatever the box."""
        return (2 * torch.arange(self.K, device=self.lo.device, dtype=self.lo.dtype) + 1) / self.K - 1

    # --- the model --------------------------------------------------------------------------------
    def logits(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_table(self) -> torch.Tensor:
        """(K, K) exact log P(bin_first = i, bin_second = j) = log p(i) + log p(j | i) (notes 3.2.4)."""
        first, second = self.logits(self.scaled_centres())
        return torch.log_softmax(first, 0)[:, None] + torch.log_softmax(second, 1)

    def floor_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log q(x): a broad Gaussian centred on the box with one box span as its standard deviation."""
        centre, std = (self.lo + self.hi) / 2, self.hi - self.lo
        z = (x - centre) / std
        return (-0.5 * z.pow(2) - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log[(1 - FLOOR) P(bin(x)) / area + FLOOR q(x)]: nats per unit area, finite everywhere."""
        lp, _ = binned_log_prob(self.log_table(), self.lo, self.hi, x, self.first)
        return torch.logaddexp(lp + math.log1p(-FLOOR), self.floor_log_prob(x) + math.log(FLOOR))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training points' NLL (notes 3.2.2) of the cell distribution in nats per unit area; the
        discrete NLL -log P(bin) is the same minus log(bin area), a constant for a fixed K and box."""
        lp, _ = binned_log_prob(self.log_table(), self.lo, self.hi, x.clamp(self.lo, self.hi), self.first)
        nll = -lp.mean()
        return {"loss": nll, "discrete_nll": nll - self.log_bin_area()}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Sequential (ancestral) sampling, notes 3.1.1: the first variable's bin i ~ p(i), then the
        second's j ~ p(j | i), then a uniform point inside cell (i, j); with probability FLOOR, from q."""
        table = self.log_table()
        dev = self.lo.device
        g = self.rng("view", dev)
        i = torch.multinomial(torch.softmax(torch.logsumexp(table, 1), 0), n, replacement=True, generator=g)
        j = torch.multinomial(torch.softmax(table[i], 1), 1, generator=g)[:, 0]
        idx = torch.stack([i, j], 1) if self.first == 0 else torch.stack([j, i], 1)
        x = self.lo + (idx + torch.rand(n, 2, device=dev, generator=g)) * self.width()
        floor = torch.rand(n, device=dev, generator=g) < FLOOR
        wide = (self.lo + self.hi) / 2 + (self.hi - self.lo) * torch.randn(n, 2, device=dev, generator=g)
        return torch.where(floor[:, None], wide, x)

    # --- what the views show --------------------------------------------------------------------------
    @torch.no_grad()
    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """Held-out NLL of the cells alone (-log P(bin), nats), the share of held-out points outside the
        box (they get only the floor density) and log(bin area): inside the box,
        test_nll = test_discrete_nll + log_bin_area (up to the floor's log(1 - FLOOR))."""
        lp, inside = binned_log_prob(self.log_table(), self.lo, self.hi, x_test, self.first)
        inside_lp = lp[inside] + self.log_bin_area()
        return {"test_discrete_nll": float(-inside_lp.mean()) if inside.any() else float("nan"),
                "test_outside_box": float((~inside).float().mean()), "log_bin_area": float(self.log_bin_area())}

    @torch.no_grad()
    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict:
        """The exact table and its factors: the first variable's marginal and, for each of its bins,
        the conditional density of the second (rows of the table, renormalised), per unit length."""
        table = self.log_table()
        w = self.width()
        log_marg = torch.logsumexp(table, 1)
        edges = self.edges().cpu().numpy().astype(np.float32)
        return {
            "discrete": True, "first": self.first, "edges": edges,
            "log_bin_area": float(self.log_bin_area()),
            # heatmap orientation [bin of x2, bin of x1]
            "log_density": ((table if self.first == 1 else table.T) - self.log_bin_area()).cpu().numpy(),
            "marg_edges": edges[self.first], "log_marg": (log_marg - torch.log(w[self.first])).cpu().numpy(),
            "slice_at": ((edges[self.first][:-1] + edges[self.first][1:]) / 2).astype(np.float32),
            "cond_edges": edges[self.second],
            "log_cond": (table - log_marg[:, None] - torch.log(w[self.second])).cpu().numpy(),
            "conn": self.connectivity(),
        }

    def connectivity(self) -> dict:
        """The network as columns of nodes and masked weights between them (see conn_dict)."""
        raise NotImplementedError


def conn_dict(columns: list[str], nodes: list[list[str]], labels: list[np.ndarray],
              edges: list[np.ndarray], totals: list[int]) -> dict:
    """A network drawing: column titles, node names and MADE labels per column, and for each pair of
    neighbouring columns an (n_out, n_in) array of edge strengths |W * mask| (0: no connection);
    totals are the full widths when only the first units are drawn."""
    return {"columns": columns, "nodes": nodes, "labels": [np.asarray(a, np.int32) for a in labels],
            "edges": [np.asarray(e, np.float32) for e in edges], "totals": totals}


def var_names(first: int) -> tuple[str, str]:
    names = ("x₁", "x₂")
    return names[first], names[1 - first]


def by_coord(first: int, of_first, of_second) -> list:
    """[value for x1, value for x2] from values for the first and second variable of the order."""
    return [of_first, of_second] if first == 0 else [of_second, of_first]


def in_labels(first: int) -> np.ndarray:
    """MADE's input labels in coordinate order: the first variable of the order gets 1."""
    return np.array(by_coord(first, 1, 2))


@register
class FVSBN(DiscreteAutoregressive):
    """Fully visible sigmoid belief network (notes 3.1.1) with categorical conditionals:
    p(x_first = i) = softmax(b1)_i and p(x_second = j | x_first) = softmax(b2 + a * u)_j, where u is
    x_first's bin centre in [-1, 1] — the K-way version of sigma(alpha_0 + alpha_1 x_1)."""

    key = "fvsbn"
    title = "FVSBN (softmax regression)"

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.b = nn.Parameter(torch.zeros(2, self.K))
        self.a = nn.Parameter(torch.zeros(self.K))

    def logits(self, u):
        return self.b[0], self.b[1] + u[:, None] * self.a

    def connectivity(self):
        f, s = var_names(self.first)
        w = np.zeros((2, 2), np.float32)
        w[self.second, self.first] = float(self.a.abs().max()) + 1e-12
        return conn_dict(["input", "conditionals"], [["x₁", "x₂"], by_coord(self.first, f"p({f}): b₁ only",
                                                                            f"p({s} | {f})")],
                         [in_labels(self.first)] * 2, [w], [2, 2])


@dataclass
class NADEConfig(DiscreteConfig):
    hidden: int = hp(32, 4, 256, step=4, label="hidden units H", help="size of the tied sigmoid hidden layer")


@register
class NADE(DiscreteAutoregressive):
    """NADE with categorical outputs (notes 3.1.2-3.1.3): h_i = sigma(c + W_{<i} x_{<i}) with W and c
    tied across the conditionals, p(x_i | x_{<i}) = softmax(A_i h_i + b_i). With two variables
    h_first = sigma(c) sees no input and h_second = sigma(c + w u) sees x_first's scaled bin centre u."""

    key = "nade"
    title = "NADE (tied sigmoid layer)"
    Config = NADEConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        H = self.cfg.hidden
        # weights spread enough that the sigmoids turn within u in [-1, 1]
        self.w = nn.Parameter(3.0 * torch.randn(H))
        self.c = nn.Parameter(torch.randn(H))
        self.A = nn.Parameter(0.1 * torch.randn(2, self.K, H))
        self.b = nn.Parameter(torch.zeros(2, self.K))

    def logits(self, u):
        h_first = torch.sigmoid(self.c)
        h_second = torch.sigmoid(self.c + u[:, None] * self.w)
        return self.A[0] @ h_first + self.b[0], h_second @ self.A[1].T + self.b[1]

    def connectivity(self):
        f, s = var_names(self.first)
        n = min(self.cfg.hidden, SHOW_UNITS)
        w_in = np.zeros((n, 2), np.float32)
        w_in[:, self.first] = self.w[:n].abs().cpu().numpy()
        w_out = np.zeros((2, n), np.float32)
        w_out[self.second] = self.A[1][:, :n].abs().amax(0).cpu().numpy()
        return conn_dict(["input", f"h = σ(c + W x), {n} of {self.cfg.hidden}", "conditionals"],
                         [["x₁", "x₂"], [f"h{k + 1}" for k in range(n)],
                          by_coord(self.first, f"p({f}): σ(c) only", f"p({s} | {f})")],
                         [in_labels(self.first), np.ones(n), in_labels(self.first)],
                         [w_in, w_out], [2, self.cfg.hidden, 2])


@dataclass
class MADEConfig(DiscreteConfig):
    renamed = {"layers": "depth"}  # its name before the families agreed on it

    hidden: int = hp(64, 8, 256, step=8, label="hidden units per layer")
    depth: int = hp(2, 1, 4, label="hidden layers")


@register
class CategoricalMADE(DiscreteAutoregressive):
    """MADE (notes 3.1.4) with K softmax logits per variable: models.nets.MADE with out_mult = K, its
    input labels given by the order, so out[:, :, first] sees nothing (a bias) and out[:, :, second]
    sees x_first only. Input: the bin centres scaled to [-1, 1] (x_second's input is masked out)."""

    key = "made"
    in_compare = True  # a representative of its family in a comparison
    title = "MADE (masked MLP)"
    Config = MADEConfig

    def __init__(self, cfg=None):
        super().__init__(cfg)
        order = [1, 2] if self.first == 0 else [2, 1]
        self.net = MADE(2, self.cfg.hidden, self.cfg.depth, out_mult=self.K, order=order)

    def logits(self, u):
        x = torch.zeros(u.shape[0], 2, device=u.device, dtype=u.dtype)
        x[:, self.first] = u
        out = self.net(x)  # (m, K, 2)
        return out[0, :, self.first], out[:, :, self.second]

    def masks(self) -> list[torch.Tensor]:
        return [m.mask for m in self.net.net if hasattr(m, "mask")]

    def connectivity(self):
        f, s = var_names(self.first)
        layers = [m for m in self.net.net if hasattr(m, "mask")]
        n = min(self.cfg.hidden, SHOW_UNITS)
        strength = [(lay.weight * lay.mask).abs() for lay in layers]
        edges = [strength[0][:n]] + [e[:n, :n] for e in strength[1:-1]]
        # output rows: logit k of coordinate i is unit k * 2 + i; a coordinate's K logits drawn as one node
        edges.append(strength[-1][:, :n].view(self.K, 2, n).amax(0))
        order = [1, 2] if self.first == 0 else [2, 1]
        inp, hid = made_degrees(2, self.cfg.hidden, self.cfg.depth, order)
        cols = ["input"] + [f"hidden {k + 1}, {n} of {self.cfg.hidden}" for k in range(self.cfg.depth)]
        return conn_dict(cols + ["K logits each"],
                         [["x₁", "x₂"]] + [[f"h{k + 1}" for k in range(n)]] * self.cfg.depth
                         + [by_coord(self.first, f"p({f}): bias only", f"p({s} | {f})")],
                         [inp.numpy()] + [h[:n].numpy() for h in hid] + [inp.numpy()],
                         [e.cpu().numpy() for e in edges], [2] + [self.cfg.hidden] * self.cfg.depth + [2])
