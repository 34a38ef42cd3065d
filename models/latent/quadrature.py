"""The VAE's marginal likelihood p(x) = integral p(z) p(x|z) dz (notes 4.3.1) by quadrature over its 1D or
2D latent space, with a convergence check on every point.

Every rule here is the midpoint (trapezoid) rule on a uniform grid, which converges exponentially for
smooth integrands: on a Gaussian of width w its relative error is about 2 exp(-2 pi^2 w^2 / h^2) for node
spacing h (Trefethen & Weideman 2014), so halving h takes an error e to about e^4 / 8 (across a sharp edge
of the posterior only to about e / 2). Every value comes with an error estimate: how far grids of twice the
spacing and a twin grid half a cell away differ from it, plus the share of p(x) on the grid's edge.

1. **Global grids** (:class:`LatentGrid`): nodes z_j of spacing h over [-B, B]^d (a quarter cell off the
   midpoints, see SHIFT) with the prior's weights,

       p(x) ~= sum_j w_j N(x; mu(z_j), diag sigma(z_j)^2),   w_j = p(z_j) h^d,

   decoded once per set of weights and shared by every point (B = 4.5 leaves out under 2e-5 of the
   prior's mass). The grid in use (a sub-grid of the configured grid, :meth:`LatentGrid.choose_stride`, or
   where that is too coarse a 2x, 4x, ... finer grid: models.vae.VAE.quadrature) is the density heatmap's
   path. For log p(x) of given points (:func:`checked_log_marginal`) it is the first of
   a ladder: its finer sub-grids, then grids of 2, 4, ... times its nodes per axis up to FINE_NODES; a
   point takes the first level whose checks pass. They see every mode of a posterior; they fail where the
   posterior p(z|x) is much narrower than h: with a small decoder sigma the posterior of a 2D latent can
   be 0.01 wide, and a 64^2 grid (h = 0.14) then misses it by nats, in either direction.
2. **Adaptive per-point quadrature** (:func:`adaptive_log_marginal`, for the points no global level
   vouches for): importance-weighted quadrature (Naylor & Smith 1982; Liu & Pierce 1994 for adaptive
   Gauss-Hermite). For each point, the posterior's mode c and covariance S = L L^T come from a few
   Gauss-Newton steps on -log p(x, z), started at the encoder's mean m(x); then

       p(x) = integral p(x, z) dz = |det L| integral p(x, c + L u) du
            ~= |det L| h_u^d sum_k p(x, c + L u_k)

   on a uniform grid u_k over [-U, U]^d (U = 4 posterior standard deviations). Where the grid of twice the
   spacing disagrees, or the posterior reaches the box's edge, the frame is re-centred and re-scaled on the
   posterior's moments measured on the grid (or the grid refined), for a few rounds. A global grid's
   nodes outside the box add the rest of the latent space (a second mode the encoder does not see). A point
   is *verified* when a grid of twice the spacing agrees within TOL_POINT nats, the box's outer layer holds
   under TAIL_SHARE of the mass and the rest of the latent space under REMOTE_SHARE; otherwise its value is
   an estimate (the finest global level's, when that one says it is closer) and its error estimate says
   how far off it may be.

What keeps the global grid cheap enough for live frames:
* **Resolution on demand** (:meth:`LatentGrid.choose_stride`): the grid in use is the coarsest sub-grid
  (every s-th node, s = 4, 2, 1 after 8) whose log p(x) on reference points agrees with that of the
  sub-grid of twice its spacing within 0.05 nats on average (0.5 at most), else the finest (then the VAE
  tries grids 2x, 4x, ... finer, up to FINE_NODES nodes), with the agreement returned (``quad_check``:
  above TOL_MEAN the global grid is *not* accurate, and the heatmap is labelled an approximation). A broad
  posterior (early in training) needs few nodes, a narrow one many.
* **Pruning** (:func:`log_marginal`): nodes come in small latent tiles and points in small spatial
  blocks; a bound on a tile's terms over a block (from the decoder means' bounding box and the largest
  sigma) drops the pairs that cannot reach within MARGIN nats of a lower bound on log p(x), and the sum
  of those bounds over the dropped tiles is checked: where it could exceed 1e-6 of p(x), everything is
  summed. So pruning changes log p(x) by less than 1e-6 nats; a narrow posterior touches few tiles.

References:
    Trefethen & Weideman (2014), The exponentially convergent trapezoidal rule. SIAM Review 56(3).
    Naylor & Smith (1982), Applications of a method for the efficient computation of posterior
        distributions. Applied Statistics 31(3).
    Liu & Pierce (1994), A note on Gauss-Hermite quadrature. Biometrika 81(3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)
LATENT_BOX = 4.5
SHIFT = 0.25  # nodes sit a quarter cell off the centre: no two sub-grids of twice the spacing are mirror
# images of each other (else a posterior symmetric about the centre would make them agree at any spacing)
STRIDES = (8, 4, 2, 1)
TOL_MEAN, TOL_MAX = 0.05, 0.5  # nats: a sub-grid is used when the one of twice its spacing agrees this well
MARGIN = 22.0  # nats below a lower bound of log p(x) at which a tile is dropped ...
LOG_DROPPED = math.log(1e-6)  # ... unless all dropped tiles together could hold more than this share of p(x)
BLOCK = 16  # points per spatial block
CELLS = 2  # a regular grid's cells are pruned in squares of CELLS x CELLS
UNDERFLOW = 1e-30  # float32: a product below this lost its precision
PAIR_TERMS = 1 << 20  # (point, node) terms per batch of kept (block, tile) pairs
DENSE_TERMS = 1 << 18  # terms per block of the plain sum (stays in cache)
DENSE_SHARE = 0.4  # above this share of kept pairs, summing everything is cheaper


def gaussian_log_prob(x: torch.Tensor, mu: torch.Tensor, log_sig: torch.Tensor) -> torch.Tensor:
    """log N(x; mu, diag exp(log_sig)^2), summed over the last axis."""
    return (-0.5 * ((x - mu) * torch.exp(-log_sig)) ** 2 - log_sig - 0.5 * LOG_2PI).sum(-1)


@dataclass
class SubGrid:
    """Every stride-th node of a LatentGrid: node indices, their log weights (spacing stride * h) and
    the nodes grouped into latent tiles (G, t) for pruning."""

    stride: int
    index: torch.Tensor
    log_w: torch.Tensor
    tiles: torch.Tensor
    per_axis: int

    @property
    def size(self) -> int:
        return self.index.shape[0]


class LatentGrid(nn.Module):
    """Rule nodes z_j of spacing h over [-B, B]^d, a quarter cell off the midpoints (SHIFT; row-major:
    z2 outer, z1 inner), with log weights
    log w_j = log N(z_j; 0, I) + d log h. Built from the config; nothing here is saved."""

    def __init__(self, dim: int, per_axis: int, box: float = LATENT_BOX, shift: float = SHIFT):
        super().__init__()
        self.dim, self.box, self.per_axis = dim, box, per_axis
        self.h = 2 * box / per_axis
        axis = -box + self.h * (torch.arange(per_axis, dtype=torch.float32) + 0.5 + shift)
        if dim == 1:
            nodes = axis[:, None]
        else:
            z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
            nodes = torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)
        self.register_buffer("nodes", nodes, persistent=False)
        self.strides = tuple(s for s in STRIDES if per_axis % s == 0 and per_axis // s >= 8)
        self._subgrids: dict[tuple[int, int], SubGrid] = {}

    def subgrid(self, stride: int, offset: int | tuple[int, int] = 0) -> SubGrid:
        """Every stride-th node along each axis, starting at node `offset` (0 <= offset < stride; a pair:
        (along z1, along z2))."""
        dev = self.nodes.device
        sg = self._subgrids.get((stride, offset))
        if sg is not None and sg.index.device == dev:
            return sg
        P = self.per_axis // stride
        o1, o2 = offset if isinstance(offset, tuple) else (offset, offset)
        i = torch.arange(o1, self.per_axis, stride, device=dev)
        j = torch.arange(o2, self.per_axis, stride, device=dev)
        index = i if self.dim == 1 else (j[:, None] * self.per_axis + i[None, :]).reshape(-1)
        z = self.nodes[index]
        log_w = -0.5 * (z ** 2).sum(1) - 0.5 * self.dim * LOG_2PI + self.dim * math.log(self.h * stride)
        local = torch.arange(index.shape[0], device=dev)
        if self.dim == 1:
            t = next(t for t in (64, 32, 16, 8, 4, 2, 1) if P % t == 0 and P // t >= 8)
            tiles = local.reshape(-1, t)
        else:
            t = next(t for t in (8, 4, 2, 1) if P % t == 0 and P // t >= 4)
            tiles = local.reshape(P // t, t, P // t, t).permute(0, 2, 1, 3).reshape(-1, t * t)
        sg = SubGrid(stride, index, log_w, tiles, P)
        self._subgrids[(stride, offset)] = sg
        return sg

    def choose_stride(self, decode, ref: torch.Tensor, start: int | None = None) -> tuple[int, float, bool]:
        """The stride to use: the coarsest s whose log p(ref) agrees with the sub-grid of twice its
        spacing within TOL_MEAN nats on average and TOL_MAX at most, else the finest (s = 1). Returned with
        that agreement (nats, mean over ref) and whether it passed. Halving h takes an error e to about
        e^4 / 8, so when the agreement is within TOL_MEAN the grid used is far more accurate than it; when
        it is not (the finest grid is too coarse for the posteriors: small decoder sigma), the global grid is
        only an approximation and points need finer grids (:func:`checked_log_marginal`). The search starts at
        `start` (the last choice: the weights move little between frames). `decode` maps node indices of
        this grid (k,) to (mu, log_sig) (k, 2)."""
        values: dict[int, torch.Tensor] = {}

        def value(s: int) -> torch.Tensor:
            if s not in values:
                sg = self.subgrid(s)
                values[s] = log_marginal(ref, *decode(sg.index), sg)
            return values[s]

        def check(p: int) -> tuple[bool, float]:
            diff = (value(pairs[p][0]) - value(pairs[p][1])).abs()
            return float(diff.mean()) <= TOL_MEAN and float(diff.max()) <= TOL_MAX, float(diff.mean())

        pairs = list(zip(self.strides[:-1], self.strides[1:]))
        if not pairs:
            return self.strides[0], float("nan"), False
        p = next((i for i, (_, fine) in enumerate(pairs) if fine == start), 0)
        ok, err = check(p)
        if ok:  # coarser while the coarser pair agrees too
            while p > 0:
                ok_c, err_c = check(p - 1)
                if not ok_c:
                    break
                p, err = p - 1, err_c
        else:  # finer until a pair agrees
            while not ok and p + 1 < len(pairs):
                p += 1
                ok, err = check(p)
        return pairs[p][1], err, ok


def log_marginal(xs: torch.Tensor, mu: torch.Tensor, log_sig: torch.Tensor, sg: SubGrid) -> torch.Tensor:
    """log sum_j w_j N(xs_i; mu_j, diag sigma_j^2) over the sub-grid's nodes for standardised points xs
    (n, 2), with mu, log_sig (m, 2) the decoder at those nodes.

    Points are grouped into small spatial blocks and nodes into latent tiles; a (block, tile) pair is
    summed (one small matrix product) only if an upper bound on its terms reaches within MARGIN nats of
    a lower bound on the block's log p(x)."""
    coef = _node_coefficients(mu, log_sig, sg.log_w)  # (5, m)
    n = xs.shape[0]
    if n < 4 * BLOCK or sg.tiles.shape[0] < 8:
        return _dense(xs, coef)
    axes = regular_grid_axes(xs)
    if axes is not None:
        return grid_log_marginal(xs, axes, mu, log_sig, sg)
    blocks = _spatial_blocks(xs)  # (B, BLOCK) point indices, n = padding
    feats = torch.cat([_features(xs), torch.zeros(1, 5, dtype=xs.dtype, device=xs.device)])
    tile_coef = coef[:, sg.tiles].permute(1, 0, 2).contiguous()  # (G, 5, t)
    pts = torch.cat([xs, xs[:1]])[blocks]
    upper = _upper_bounds(pts.amin(1), pts.amax(1), mu, log_sig, sg)  # (B, G)
    best = upper.argmax(1)
    best_part = torch.logsumexp(torch.bmm(feats[blocks], tile_coef[best]), -1)  # (B, BLOCK)
    lower = torch.where(blocks < n, best_part, torch.inf).amin(1)
    keep = upper >= (lower - MARGIN)[:, None]
    rows = torch.arange(blocks.shape[0], device=xs.device)
    keep[rows, best] = False
    if float(keep.float().mean()) > DENSE_SHARE:  # broad posteriors: summing everything is cheaper
        return _dense(xs, coef)
    dropped = upper.masked_fill(keep, -torch.inf)
    dropped[rows, best] = -torch.inf
    unsure = torch.logsumexp(dropped, 1) + math.log(sg.tiles.shape[1]) - lower > LOG_DROPPED
    b, g = keep.nonzero(as_tuple=True)
    step = max(1, PAIR_TERMS // (BLOCK * sg.tiles.shape[1]))
    parts = [torch.logsumexp(torch.bmm(feats[blocks[b[i:i + step]]], tile_coef[g[i:i + step]]), -1)
             for i in range(0, b.shape[0], step)]
    index = torch.cat([blocks.reshape(-1), blocks[b].reshape(-1)])
    values = torch.cat([best_part.reshape(-1)] + [p.reshape(-1) for p in parts])
    top = torch.full((n + 1,), -torch.inf, dtype=xs.dtype, device=xs.device).scatter_reduce(0, index, values, "amax")
    total = torch.zeros_like(top).index_add(0, index, torch.exp(values - top[index]))
    out = (top + torch.log(total))[:n]
    if unsure.any():  # blocks whose dropped tiles could hold more than 1e-6 of p(x): sum everything
        idx = blocks[unsure].reshape(-1)
        idx = idx[idx < n]
        out[idx] = _dense(xs[idx], coef)
    return out


def _upper_bounds(lo_x, hi_x, mu, log_sig, sg: SubGrid) -> torch.Tensor:
    """For each block of points (bounding box lo_x, hi_x) and each tile: an upper bound on every term
    log w_j + log N(x; mu_j, sigma_j), from the tile's largest log w_j - sum log sigma_j, the bounding box
    of its decoder means and its largest sigma per axis. (B, G)."""
    t = sg.tiles
    c = (sg.log_w - log_sig.sum(1) - LOG_2PI)[t].amax(1)
    m = mu[t]
    lo, hi, smax = m.amin(1), m.amax(1), torch.exp(log_sig[t].amax(1))
    gap = torch.relu(lo[None] - hi_x[:, None]) + torch.relu(lo_x[:, None] - hi[None])  # (B, G, 2)
    return c[None] - 0.5 * ((gap / smax[None]) ** 2).sum(-1)


def _spatial_blocks(xs: torch.Tensor) -> torch.Tensor:
    """Point indices in blocks of BLOCK nearby points: strips along x1, sorted along x2 within each;
    the last block is padded with the index n."""
    n = xs.shape[0]
    strips = max(1, round(math.sqrt(n / BLOCK)))
    by_x1 = torch.argsort(xs[:, 0])
    strip = torch.empty(n, dtype=torch.long, device=xs.device)
    strip[by_x1] = torch.arange(n, device=xs.device) * strips // n
    x2 = xs[:, 1]
    key = strip.double() * 4 * (float((x2.max() - x2.min()).abs()) + 1) + (x2 - x2.min()).double()
    order = torch.argsort(key)
    pad = (-n) % BLOCK
    order = torch.cat([order, torch.full((pad,), n, dtype=torch.long, device=xs.device)])
    return order.reshape(-1, BLOCK)


def _features(x: torch.Tensor) -> torch.Tensor:
    """(x1^2, x2^2, x1, x2, 1) per point: a quadratic form in x is one product with coefficients."""
    return torch.cat([x ** 2, x, torch.ones_like(x[:, :1])], 1)


def _dense(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Every term, in blocks of rows: the plain sum."""
    feats = _features(x)
    rows = max(1, DENSE_TERMS // coef.shape[1])
    return torch.cat([torch.logsumexp(feats[i:i + rows] @ coef, 1) for i in range(0, x.shape[0], rows)])


def _node_coefficients(mu, log_sig, log_w) -> torch.Tensor:
    """(5, m) coefficients of log w_j + log N(x; mu_j, diag sigma_j^2) as a quadratic in x."""
    prec = torch.exp(-2.0 * log_sig)
    const = log_w - 0.5 * (prec * mu ** 2).sum(1) - log_sig.sum(1) - LOG_2PI
    return torch.cat([-0.5 * prec, prec * mu, const[:, None]], 1).T.contiguous()


def grid_log_marginal(xs, axes, mu, log_sig, sg: SubGrid) -> torch.Tensor:
    """The same sum on a regular grid of points (the density heatmap). A term factorises over the axes,
    log w_j + log N(x; mu_j, sigma_j) = b_j(x2) + a_j(x1), so each tile's sum over the rectangle of grid
    cells where it can matter is one small (rows x t) @ (t x cols) product, with a shift per row and per
    column; tiles go in batches of similar rectangles. Which tiles matter is decided on squares of
    CELLS x CELLS grid cells, with the same bounds as :func:`log_marginal`; cells where that cannot be
    vouched for, or where a tile's product underflowed and might matter, are summed directly."""
    gx, gy = axes
    r = gx.shape[0]
    t = sg.tiles
    ms, ls, lw = mu[t], log_sig[t], sg.log_w[t]  # (G, t, ..)
    nb = -(-r // CELLS)
    blk = torch.arange(r, device=xs.device) // CELLS
    # a lower bound for every cell of a square: the best tile's first node at the square's worst cell
    a0 = _axis_terms(gx, ms[:, :1, 0], ls[:, :1, 0])[:, 0]  # (G, r)
    b0 = _axis_terms(gy, ms[:, :1, 1], ls[:, :1, 1])[:, 0] + lw[:, :1]
    a0 = torch.full((t.shape[0], nb), torch.inf, dtype=a0.dtype, device=a0.device).scatter_reduce(
        1, blk.expand(t.shape[0], -1), a0, "amin")
    b0 = torch.full_like(a0, torch.inf).scatter_reduce(1, blk.expand(t.shape[0], -1), b0, "amin")
    lower = (b0[:, :, None] + a0[:, None, :]).amax(0)  # (nb, nb) [y square, x square]
    # an upper bound per tile and square, from the tile's means' box and largest sigma
    c = (lw - ls.sum(-1) - LOG_2PI).amax(1)
    lo, hi, smax = ms.amin(1), ms.amax(1), torch.exp(ls.amax(1))
    ga = _interval_gap(gx, blk, nb, lo[:, 0], hi[:, 0], smax[:, 0])  # (G, nb)
    gb = _interval_gap(gy, blk, nb, lo[:, 1], hi[:, 1], smax[:, 1])
    upper = c[:, None, None] - gb[:, :, None] - ga[:, None, :]  # (G, nb, nb)
    mask = upper >= (lower - MARGIN)
    dropped = torch.logsumexp(upper.masked_fill(mask, -torch.inf), 0) + math.log(t.shape[1]) - lower
    (r0, r1), (c0, c1) = _span(mask.any(2)), _span(mask.any(1))
    r0, c0 = r0 * CELLS, c0 * CELLS
    r1, c1 = (r1 * CELLS).clamp_max(r), (c1 * CELLS).clamp_max(r)
    pieces = [_tile_rectangles(gx, gy, ms[batch], ls[batch], lw[batch], (r0[batch], r1[batch]),
                               (c0[batch], c1[batch])) for batch in _batches(r1 - r0, c1 - c0)]
    index, vals, under = (torch.cat([p[k] for p in pieces]) for k in range(3))
    top = torch.full((r * r + 1,), -torch.inf, dtype=xs.dtype, device=xs.device)  # the last cell: padding
    top.scatter_reduce_(0, index, vals, "amax")
    top[-1] = 0.0
    total = torch.zeros_like(top).index_add_(0, index, torch.exp(vals - top[index]))
    out = (top + torch.log(total))[:-1]
    risky = index[(under - 80.0) > out[index.clamp_max(r * r - 1)] + LOG_DROPPED]
    # cells of squares whose dropped tiles could hold more than 1e-6 of p(x), or where a tile's product
    # underflowed (below its level - 87) and might matter: summed directly
    unsure = (dropped > LOG_DROPPED)[blk[:, None], blk[None, :]].reshape(-1)
    cells = torch.cat([risky, unsure.nonzero().squeeze(1)]).unique()
    if cells.numel():
        out[cells] = _dense(xs[cells].double(), _node_coefficients(mu, log_sig, sg.log_w).double()).to(xs.dtype)
    return out


def _interval_gap(g, blk, nb, lo, hi, smax) -> torch.Tensor:
    """0.5 (distance between each tile's interval [lo, hi] and each square's interval of g / smax)^2:
    (G, nb), the least a term of the tile can fall below its peak anywhere in the square."""
    g_lo = torch.full((nb,), torch.inf, dtype=g.dtype, device=g.device).scatter_reduce(0, blk, g, "amin")
    g_hi = torch.full((nb,), -torch.inf, dtype=g.dtype, device=g.device).scatter_reduce(0, blk, g, "amax")
    gap = torch.relu(lo[:, None] - g_hi[None]) + torch.relu(g_lo[None] - hi[:, None])
    return 0.5 * (gap / smax[:, None]) ** 2


def _batches(rows: torch.Tensor, cols: torch.Tensor) -> list[torch.Tensor]:
    """Tiles grouped by the size of their rectangles (rows and columns rounded up to powers of 2), so that
    padding each group to its largest rectangle wastes at most 3/4 of the work; empty ones dropped."""
    live = (rows > 0) & (cols > 0)
    key = torch.ceil(torch.log2(rows.clamp_min(1).double())) * 16 + torch.ceil(torch.log2(cols.clamp_min(1).double()))
    key = torch.where(live, key, -1.0)
    return [(key == k).nonzero().squeeze(1) for k in key.unique() if k >= 0]


def _tile_rectangles(gx, gy, mu, log_sig, log_w, rows, cols):
    """For tiles of nodes (G', t) and their cell rectangles: the log of each tile's sum on each cell of its
    rectangle, flat (cell index, r * r for padding; value; the level of cells whose product underflowed,
    else -inf). The axis terms a (over x1) and b (over x2, with log w) are computed on the windows only."""
    r = gx.shape[0]
    ri, rv = _window(*rows, r)
    ci, cv = _window(*cols, r)
    b = _axis_terms(gy[ri][:, None, :], mu[..., 1], log_sig[..., 1]) + log_w[..., None]  # (G', t, R)
    a = _axis_terms(gx[ci][:, None, :], mu[..., 0], log_sig[..., 0])  # (G', t, C)
    b_max, a_max = b.amax(1), a.amax(1)
    prod = torch.bmm(torch.exp(b - b_max[:, None]).transpose(1, 2), torch.exp(a - a_max[:, None]))
    level = b_max[:, :, None] + a_max[:, None, :]
    valid = rv[:, :, None] & cv[:, None, :]
    index = torch.where(valid, ri[:, :, None] * r + ci[:, None, :], r * r).reshape(-1)
    vals = torch.where(valid, torch.log(prod) + level, -torch.inf).reshape(-1)
    return index, vals, torch.where(valid & (prod < UNDERFLOW), level, -torch.inf).reshape(-1)


def _axis_terms(g: torch.Tensor, mu: torch.Tensor, log_sig: torch.Tensor) -> torch.Tensor:
    """log N(g_k; mu_j, sigma_j) for grid coordinates g (r,) or (G, 1, r) and tiles of nodes (G, t):
    (G, t, r)."""
    z = (g - mu[..., None]) * torch.exp(-log_sig)[..., None]
    return -0.5 * z ** 2 - log_sig[..., None] - 0.5 * LOG_2PI


def _span(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one past the last index of True per row of flags (G, r); (0, 0) if none."""
    r = flags.shape[1]
    any_ = flags.any(1)
    first = flags.int().argmax(1)
    last = r - flags.flip(1).int().argmax(1)
    return torch.where(any_, first, 0), torch.where(any_, last, 0)


def _window(start: torch.Tensor, stop: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices start..stop-1 per tile, padded to the longest window (clamped), and which are real."""
    width = int((stop - start).max())
    idx = start[:, None] + torch.arange(width, device=start.device)
    return idx.clamp_max(r - 1), idx < stop[:, None]


def regular_grid_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(xs, ys) if x (n, 2) is a square grid in row-major order (y outer, as metrics.make_grid builds it),
    else None."""
    n = x.shape[0]
    r = int(round(math.sqrt(n)))
    if r < 16 or r * r != n:
        return None
    g = x.reshape(r, r, 2)
    xs, ys = g[0, :, 0], g[:, 0, 1]
    if not (torch.equal(g[..., 0], xs.expand(r, r)) and torch.equal(g[..., 1], ys[:, None].expand(r, r))):
        return None
    return xs, ys



# --- every point checked, and adaptive per-point quadrature where the global grid fails ----------------

TOL_POINT = 0.05  # nats: a value is verified when a grid of twice the spacing agrees this well ...
TAIL_SHARE = 0.01  # ... the local box's outer layer of nodes holds under this share of p(x) ...
REMOTE_SHARE = 0.01  # ... and the latent space outside the box (on the global grid) under this share
ADAPT_BOX = 4.0  # the local grid spans [-U, U]^d in units of the posterior's standard deviations
ADAPT_NODES = {1: 16, 2: 8}  # nodes per axis at first ...
ADAPT_MAX_NODES = {1: 128, 2: 32}  # ... doubled while a frame that fits the posterior is still too coarse
ADAPT_ROUNDS = 4  # grids per point at most (re-centred and re-scaled, or refined)
FIT_LO, FIT_HI = 0.25, 2.25  # a frame fits a posterior whose covariance in u has eigenvalues in this range
GROW = 1.5  # a grid whose edge held too much mass is re-scaled to the moments measured on it, times this
GN_STEPS = 2  # Gauss-Newton steps from the encoder's mean towards the posterior's mode
FD_STEP = 1e-3  # latent step of the forward differences for the decoder's Jacobian
ADAPT_ROWS = 1 << 16  # decoder evaluations per chunk
FINE_NODES = {1: 1 << 14, 2: 1 << 16}  # global grids finer than the configured one, up to this many nodes
FINER_HOPE = 1.0  # nats: a point off by more (times 2 per finer level left) skips the finer global levels
REMOTE_NODES = 4096  # the rest of the latent space is summed on a global sub-grid of at most this many nodes


@dataclass
class Marginal:
    """log p(x) per point (standardised coordinates) and what vouches for it.

    Attributes:
        log_p: (n,) the value.
        error: (n,) nats, how far off it may be: the agreement of a grid of twice the spacing (a generous
            bound: the grid used is far finer), plus the share of p(x) on the grid's outer layer of nodes,
            plus (per-point grids) the part the global grid adds for the latent space outside the box.
        verified: (n,) bool: each part within TOL_POINT, TAIL_SHARE and REMOTE_SHARE.
        adaptive: (n,) bool: computed on a per-point grid (else on the global grid).
    """

    log_p: torch.Tensor
    error: torch.Tensor
    verified: torch.Tensor
    adaptive: torch.Tensor


@dataclass
class Frame:
    """Per-point local grids: z = c + L u, u on a midpoint grid of `nodes` per axis over [-U, U]^d."""

    c: torch.Tensor  # (n, d)
    L: torch.Tensor  # (n, d, d), lower triangular
    nodes: torch.Tensor  # (n,) nodes per axis


def checked_log_marginal(xs: torch.Tensor, levels, encode, decode, remote=None) -> Marginal:
    """log p(x) for standardised points xs (n, 2), each checked, on the first of these that vouches for it:

    1. the global grids in `levels`, coarse to fine: a level vouches for a point where these agree with
       it within TOL_POINT: two of its sub-grids of twice the spacing (node parities (0, 0) and (1, 0),
       whose leading errors differ), its *twin* (the same spacing, moved half a cell along both axes:
       sub-grids share the grid's nodes, so a sliver of the posterior that the grid misses they miss
       too, where the twin may not); and its outer layer of nodes holds under
       TAIL_SHARE of the sum (a posterior cut off by the box's edge is cut off alike on every grid, which
       no comparison of spacings sees). A point whose grids disagree by more than FINER_HOPE (times 2 per
       finer level left) goes straight to 2.;
    2. :func:`adaptive_log_marginal`: a grid of the point's own around its posterior, with `remote` (a
       global sub-grid) for the rest of the latent space. Where that cannot be verified either (a
       posterior with several modes or sharp edges, where its own checks are the less reliable), the
       finest global grid's estimate is kept unless it is off by more than FINER_HOPE too; the point stays
       unverified, with that estimate's error.

    Each level is a callable returning (grid, coarse_a, coarse_b, twin), each (SubGrid, nodes, mu, log_sig)
    or None where there is none (then the level cannot vouch for anything); `encode` gives q(z|x)'s (mean,
    std) for standardised points. Differentiable in xs and the decoder when gradients are on (which grid
    each point gets is decided without)."""
    n = xs.shape[0]
    log_p = torch.zeros(n, dtype=xs.dtype, device=xs.device)
    error = torch.zeros(n, dtype=xs.dtype, device=xs.device)
    verified = torch.zeros(n, dtype=torch.bool, device=xs.device)
    todo = torch.arange(n, device=xs.device)
    skip = torch.zeros(0, dtype=torch.long, device=xs.device)  # straight to their own grids
    best_err = torch.full((n,), torch.inf, dtype=xs.dtype, device=xs.device)  # the best global estimate so far
    best_val = torch.zeros(n, dtype=xs.dtype, device=xs.device)
    best_level = torch.full((n,), -1, dtype=torch.long, device=xs.device)
    grids = []
    for li, level in enumerate(levels):
        if todo.numel() == 0:
            break
        (sg, _, mu, log_sig), *coarse = level()
        grids.append((sg, mu, log_sig))
        x = xs[todo]
        with torch.no_grad():
            value = log_marginal(x.detach(), mu.detach(), log_sig.detach(), sg)
            diff = torch.zeros_like(value)
            for c in coarse:  # the two sub-grids and the twin
                if c is None:
                    diff = torch.full_like(value, torch.inf)
                    break
                csg, _, cmu, cls = c
                diff = torch.maximum(diff, (log_marginal(x.detach(), cmu.detach(), cls.detach(), csg) - value).abs())
            tail = _edge_share(x.detach(), sg, mu.detach(), log_sig.detach(), value)
            ok = torch.isfinite(value) & (diff <= TOL_POINT) & (tail <= TAIL_SHARE)
            err = torch.where(torch.isfinite(value), diff + tail, torch.inf)
            better = err < best_err[todo]
            best_err[todo[better]], best_val[todo[better]], best_level[todo[better]] = err[better], value[better], li
        idx = todo[ok]
        if idx.numel():
            good = log_marginal(xs[idx], mu, log_sig, sg) if torch.is_grad_enabled() else value[ok]
            log_p = log_p.index_put((idx,), good)
            error[idx] = err[ok]
            verified[idx] = True
        # halving the spacing takes an error e to about e^4 / 8 (to e / 2 across a sharp edge): the finer levels
        # left cannot rescue a point this far off
        hopeless = ~ok & ~(diff <= FINER_HOPE * 2.0 ** (len(levels) - 1 - li))
        skip = torch.cat([skip, todo[hopeless]])
        todo = todo[~ok & ~hopeless]
    todo = torch.cat([todo, skip])
    adaptive = torch.zeros(n, dtype=torch.bool, device=xs.device)
    if todo.numel():
        a = adaptive_log_marginal(xs[todo], encode, decode, remote)
        # where its own grid could not be verified either (several modes, sharp edges: then its own checks
        # are the less reliable), the finest global grid's estimate is kept unless it was far off too
        keep_global = ~a.verified & (best_err[todo] <= torch.clamp(a.error, min=FINER_HOPE))
        own = todo[~keep_global]
        log_p = log_p.index_put((own,), a.log_p[~keep_global])
        error[own] = a.error[~keep_global]
        verified[own] = a.verified[~keep_global]
        adaptive[own] = True
        for li, (sg, mu, log_sig) in enumerate(grids):
            idx = todo[keep_global & (best_level[todo] == li)]
            if idx.numel():
                good = log_marginal(xs[idx], mu, log_sig, sg) if torch.is_grad_enabled() else best_val[idx]
                log_p = log_p.index_put((idx,), good)
                error[idx] = best_err[idx]
    return Marginal(log_p, error, verified, adaptive)


def _edge_share(xs, sg: SubGrid, mu, log_sig, total) -> torch.Tensor:
    """The share of each point's sum on the grid's outer layer of nodes: a posterior that reaches the box's
    edge (a point far from the data) is cut off alike on every grid, which no comparison of spacings sees."""
    edge = _edge_nodes(sg, xs.device)
    return torch.exp(_dense(xs, _node_coefficients(mu[edge], log_sig[edge], sg.log_w[edge])) - total)


def _edge_nodes(sg: SubGrid, device) -> torch.Tensor:
    """Positions (within the sub-grid) of its outer layer of nodes."""
    P = sg.per_axis
    k = torch.arange(sg.size, device=device)
    on = lambda i: (i == 0) | (i == P - 1)  # noqa: E731
    return (on(k) if sg.size == P else on(k % P) | on(k // P)).nonzero().squeeze(1)


def adaptive_log_marginal(xs: torch.Tensor, encode, decode, remote=None) -> Marginal:
    """log p(x) by importance-weighted quadrature around each point's posterior (see the module's notes):
    Laplace frame from the encoder's mean (:func:`laplace_frame`), then up to ADAPT_ROUNDS grids; a point
    stops when a grid of twice the spacing agrees within TOL_POINT and the box's outer layer holds under
    TAIL_SHARE of the sum. Otherwise its grid is re-centred on the posterior's mean and re-scaled to its
    covariance, both measured on the grid (doubled where the posterior reached the edge), or, where the
    frame already fits, refined (twice the nodes per axis). `remote` = (SubGrid, nodes, mu, log_sig) of a
    global sub-grid adds the latent space outside each box. Differentiable when gradients are on."""
    n, d = xs.shape[0], None
    with torch.no_grad():
        m0, _ = encode(xs.detach())
        d = m0.shape[1]
        frame = laplace_frame(xs.detach(), m0, decode)
        result = {k: torch.zeros(n, dtype=xs.dtype, device=xs.device) for k in ("all", "delta", "tail")}
        todo = torch.arange(n, device=xs.device)
        for r in range(ADAPT_ROUNDS):
            for n_axis in frame.nodes[todo].unique().tolist():
                idx = todo[frame.nodes[todo] == n_axis]
                sub = Frame(frame.c[idx], frame.L[idx], frame.nodes[idx])
                out = local_pass(xs[idx].detach(), sub, n_axis, decode)
                delta = torch.maximum((out["coarse0"] - out["all"]).abs(), (out["coarse1"] - out["all"]).abs())
                tail = torch.exp(out["edge"] - out["all"])
                result["all"][idx], result["delta"][idx], result["tail"][idx] = out["all"], delta, tail
                if r == ADAPT_ROUNDS - 1:
                    continue
                # the next frame for the points that are not done (a done point keeps the grid it was summed on)
                done = (delta <= TOL_POINT) & (tail <= TAIL_SHARE)
                eig = torch.linalg.eigvalsh(out["cov"])
                fits = ((out["mean"].abs() <= 0.5).all(1) & (eig.min(1).values >= FIT_LO)
                        & (eig.max(1).values <= FIT_HI) & (tail <= TAIL_SHARE))
                chol = torch.linalg.cholesky(out["cov"])
                grow = torch.where(tail > TAIL_SHARE, GROW, 1.0)  # moments of a cut-off posterior are too small
                refine = fits & (delta > TOL_POINT)
                keep = refine | done
                new_L = torch.where(keep[:, None, None], sub.L, sub.L @ chol * grow[:, None, None])
                new_c = torch.where(keep[:, None], sub.c, sub.c + torch.einsum("nab,nb->na", sub.L, out["mean"]))
                frame.c[idx], frame.L[idx] = new_c, new_L
                frame.nodes[idx] = torch.where(refine & ~done, (sub.nodes * 2).clamp_max(ADAPT_MAX_NODES[d]),
                                               sub.nodes)
            done = (result["delta"][todo] <= TOL_POINT) & (result["tail"][todo] <= TAIL_SHARE)
            todo = todo[~done]
            if todo.numel() == 0:
                break
    local = result["all"]
    if torch.is_grad_enabled():  # the same grids, now with gradients
        local = torch.zeros_like(local)
        for n_axis in frame.nodes.unique().tolist():
            idx = (frame.nodes == n_axis).nonzero().squeeze(1)
            sub = Frame(frame.c[idx], frame.L[idx], frame.nodes[idx])
            local = local.index_put((idx,), local_pass(xs[idx], sub, n_axis, decode)["all"])
    log_p, far = local, torch.zeros_like(local)
    if remote is not None:
        rest = remote_log_sum(xs, frame, remote, local)
        log_p = torch.logaddexp(local, rest)
        far = (rest - log_p).detach()
    with torch.no_grad():
        share = torch.exp(far)  # what the global grid adds: itself only roughly right, so counted in the error
        error = result["delta"] + result["tail"] - torch.log1p(-share.clamp_max(1 - 1e-7))
        verified = (result["delta"] <= TOL_POINT) & (result["tail"] <= TAIL_SHARE) & (share <= REMOTE_SHARE)
        verified &= torch.isfinite(log_p.detach())
    return Marginal(log_p, error, verified, torch.ones(n, dtype=torch.bool, device=xs.device))


def _grid_u(n_axis: int, d: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Nodes u of spacing h over [-U, U]^d, a quarter cell off the midpoints (K = n_axis^d, row-major), their
    integer coordinates and h."""
    h = 2 * ADAPT_BOX / n_axis
    k = torch.arange(n_axis, device=device)
    if d == 1:
        ks = k[:, None]
    else:
        k2, k1 = torch.meshgrid(k, k, indexing="ij")
        ks = torch.stack([k1.reshape(-1), k2.reshape(-1)], 1)
    return -ADAPT_BOX + h * (ks.to(dtype) + 0.5 + SHIFT), ks, h


def _decode_rows(decode, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """decode over (..., d) in chunks of ADAPT_ROWS rows."""
    flat = z.reshape(-1, z.shape[-1])
    parts = [decode(flat[i:i + ADAPT_ROWS]) for i in range(0, flat.shape[0], ADAPT_ROWS)]
    mu = torch.cat([p[0] for p in parts]).reshape(*z.shape[:-1], -1)
    log_sig = torch.cat([p[1] for p in parts]).reshape(*z.shape[:-1], -1)
    return mu, log_sig


def _neg_log_joint(xs, z, mu, log_sig) -> torch.Tensor:
    """-log p(x, z) up to a constant: |z|^2 / 2 + sum_k ((x_k - mu_k) / sigma_k)^2 / 2 + log sigma_k."""
    return 0.5 * (z ** 2).sum(-1) + (0.5 * ((xs - mu) * torch.exp(-log_sig)) ** 2 + log_sig).sum(-1)


def laplace_frame(xs: torch.Tensor, m0: torch.Tensor, decode) -> Frame:
    """The posterior's mode and covariance by Gauss-Newton on -log p(x, z) from z = m0 (the encoder's mean):
    the Hessian approximated by I + J^T diag(sigma^-2) J with J the decoder mean's Jacobian (forward
    differences); a step that does not lower -log p(x, z) is halved. Returns the frame z = c + L u at the
    best point, L L^T = (I + J^T diag(sigma^-2) J)^-1 (the Laplace approximation of p(z|x))."""
    n, d = m0.shape
    eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
    c = m0.clone()
    best_c, best_f = c.clone(), torch.full((n,), torch.inf, dtype=xs.dtype, device=xs.device)
    best_H = eye.expand(n, d, d).clone()
    step = torch.zeros_like(c)
    for t in range(GN_STEPS + 1):
        pts = torch.cat([c[:, None], c[:, None] + FD_STEP * eye[None]], 1)  # (n, d+1, d)
        mu, log_sig = _decode_rows(decode, pts)
        f = _neg_log_joint(xs, c, mu[:, 0], log_sig[:, 0])
        J = (mu[:, 1:] - mu[:, :1]) / FD_STEP  # (n, d, 2): J[a, k] = d mu_k / d z_a
        prec = torch.exp(-2.0 * log_sig[:, 0])  # (n, 2)
        H = eye + torch.einsum("nak,nk,nbk->nab", J, prec, J)
        grad = c - torch.einsum("nak,nk,nk->na", J, prec, xs - mu[:, 0])
        better = torch.isfinite(f) & torch.isfinite(H).all(2).all(1) & (f <= best_f)
        best_c = torch.where(better[:, None], c, best_c)
        best_f = torch.where(better, f, best_f)
        best_H = torch.where(better[:, None, None], H, best_H)
        if t == GN_STEPS:
            break
        fresh = -torch.linalg.solve(H, grad[..., None])[..., 0]
        # from the best point: a fresh Gauss-Newton step where this one improved, else half the last step
        step = torch.where(better[:, None], torch.nan_to_num(fresh), 0.5 * step)
        c = best_c + step
    cov = torch.linalg.inv(best_H)
    L = torch.linalg.cholesky(0.5 * (cov + cov.transpose(1, 2)))
    return Frame(best_c, L, torch.full((n,), ADAPT_NODES[d], dtype=torch.long, device=xs.device))


def local_pass(xs: torch.Tensor, frame: Frame, n_axis: int, decode) -> dict[str, torch.Tensor]:
    """One grid per point, n_axis nodes per axis for all: the log of the rule's sum of p(x, z) over the
    box (`all`: |det L| h^d sum_k p(x, c + L u_k)), of two sub-grids of twice the spacing (node parities
    (0, 0) and (1, 0), weights (2h)^d), of the box's outer layer of nodes (`edge`), and the posterior's
    mean and covariance in u (the latter with the cell's own variance h^2 / 12)."""
    n, d = frame.c.shape
    u, ks, h = _grid_u(n_axis, d, xs.device, xs.dtype)  # (K, d)
    z = frame.c[:, None] + torch.einsum("nab,kb->nka", frame.L, u)  # (n, K, d)
    mu, log_sig = _decode_rows(decode, z)
    log_det = torch.log(torch.diagonal(frame.L, dim1=1, dim2=2)).sum(1)  # (n,)
    terms = (-0.5 * (z ** 2).sum(-1) - 0.5 * d * LOG_2PI + log_det[:, None] + d * math.log(h)
             + gaussian_log_prob(xs[:, None], mu, log_sig))  # (n, K)
    total = torch.logsumexp(terms, 1)
    out = {"all": total}
    # two of the 2^d sub-grids of twice the spacing whose leading errors differ (in 2D, parities (0, 0) and
    # (1, 1) would have the same error with opposite sign: no second opinion)
    for name, parity in (("coarse0", (0, 0)), ("coarse1", (1, 0))):
        sel = (ks % 2 == torch.tensor(parity[:d], device=ks.device)).all(1)
        out[name] = torch.logsumexp(terms[:, sel], 1) + d * math.log(2.0)
    edge = ((ks == 0) | (ks == n_axis - 1)).any(1)
    out["edge"] = torch.logsumexp(terms[:, edge], 1)
    with torch.no_grad():
        p = torch.exp(terms - total[:, None])  # (n, K)
        mean = p @ u
        dev = u[None] - mean[:, None]
        cov = torch.einsum("nk,nka,nkb->nab", p, dev, dev)
        cov = cov + (h * h / 12.0) * torch.eye(d, dtype=xs.dtype, device=xs.device)
    out["mean"], out["cov"] = mean, cov
    return out


def remote_log_sum(xs: torch.Tensor, frame: Frame, remote, local: torch.Tensor) -> torch.Tensor:
    """log of a global sub-grid's sum over its nodes whose cells lie outside each point's box (-inf where
    none): the rest of the latent space (the cells that meet the box are left out: the box's edge layer,
    counted in the error, bounds what lies between). `remote` = (SubGrid, nodes (m, d), mu, log_sig);
    `local` (n,) the box's log sum: nodes below 1e-8 / m of it are skipped (together under 1e-8 of it)."""
    sg, nodes, mu, log_sig = remote
    m = nodes.shape[0]
    coef = _node_coefficients(mu, log_sig, sg.log_w)
    half = 0.5 * float(nodes[1, 0] - nodes[0, 0]) if m > 1 else 0.0  # half a cell
    rows = max(1, (1 << 20) // m)
    out = []
    for i in range(0, xs.shape[0], rows):
        terms = _features(xs[i:i + rows]) @ coef  # (r, m)
        with torch.no_grad():
            L, c = frame.L[i:i + rows], frame.c[i:i + rows]
            row, col = (terms > (local[i:i + rows].detach() - 18.5 - math.log(m))[:, None]).nonzero(as_tuple=True)
            Linv = torch.linalg.inv(L)  # (r, d, d)
            reach = ADAPT_BOX + half * Linv.abs().sum(2).amax(1)  # a cell's farthest corner, in u
            dz = nodes[col] - c[row]  # (k, d)
            u = torch.einsum("kab,kb->ka", Linv[row], dz)
            outside = u.abs().amax(1) > reach[row]
            row, col = row[outside], col[outside]
        vals = terms[row, col]
        top = torch.full((terms.shape[0],), -torch.inf, dtype=terms.dtype, device=terms.device)
        top = top.scatter_reduce(0, row, vals.detach(), "amax")
        safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        total = torch.zeros_like(top).index_add(0, row, torch.exp(vals - safe[row]))
        out.append(safe + torch.log(total))
    return torch.cat(out)
