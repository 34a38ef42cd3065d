"""The contract between training and drawing, as plain numpy: a :class:`Snapshot` per frame and one
typed probe record per family of models.

A model's ``probe(grid, points)`` returns a dict of numpy arrays and scalars (models never import the
playground); the session turns it into the record named by the model's ``probe_kind`` with
:func:`make_probe`. ``from_dict`` is strict: a key the record does not declare, a declared key that is
missing, or a value of the wrong type raises at once, naming the key, so a model and its record cannot
drift apart silently (tests/test_contract.py runs every registered model through it).

This module imports the standard library and numpy only: views, tests and the benchmark read it
without torch, gradio or plotly.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


def _maybe_nonfinite(default: Any = dataclasses.MISSING) -> Any:
    """A field whose array may hold inf or NaN by design (the views mask them)."""
    return field(default=default, metadata={"finite": False})


@dataclass(kw_only=True)
class Probe:
    """Base of the probe records: what a family can show beyond density and samples."""

    kind: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Probe:
        """The record from a model's probe() dict. Scalars given as numpy scalars or 0-d arrays become
        Python ints, floats, bools and strings; arrays stay numpy arrays.

        Raises:
            KeyError: a key the record does not declare, or a required key that is missing.
            TypeError: a value that does not fit its field's type.
        """
        hints = _hints(cls)
        unknown = [k for k in d if k not in hints]
        if unknown:
            raise KeyError(f"{cls.__name__} has no field {', '.join(map(repr, unknown))} (the model's probe() "
                           f"returned it): declare it in playground/snapshot.py or stop returning it")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise KeyError(f"{cls.__name__} needs {missing[0]!r}, which the model's probe() did not return")
        return cls(**{k: _coerce(cls, k, v, hints[k]) for k, v in d.items()})

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that hold numpy arrays (None fields left out)."""
        return {f.name: v for f in dataclasses.fields(self) if isinstance(v := getattr(self, f.name), np.ndarray)}

    def nonfinite(self) -> list[str]:
        """Numeric array fields holding inf or NaN, apart from those documented to allow them."""
        allowed = {f.name for f in dataclasses.fields(self) if not f.metadata.get("finite", True)}
        return [k for k, v in self.arrays().items()
                if k not in allowed and v.dtype.kind in "fc" and not np.isfinite(v).all()]


@functools.cache
def _hints(cls: type) -> dict[str, tuple[Any, bool]]:
    """Field name -> (base type, optional) for a record class, resolved once."""
    out = {}
    resolved = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = resolved[f.name]
        args = typing.get_args(tp)
        optional = type(None) in args
        if optional:
            rest = [a for a in args if a is not type(None)]
            tp = rest[0] if len(rest) == 1 else Any
        out[f.name] = (typing.get_origin(tp) or tp, optional)
    return out


def _coerce(cls: type, name: str, value: Any, hint: tuple[Any, bool]) -> Any:
    tp, optional = hint
    if value is None and optional:
        return None
    scalar = value.item() if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 else value
    ok = {np.ndarray: lambda: isinstance(value, np.ndarray),
          bool: lambda: isinstance(scalar, bool),
          int: lambda: isinstance(scalar, int) and not isinstance(scalar, bool),
          float: lambda: isinstance(scalar, (int, float)) and not isinstance(scalar, bool),
          str: lambda: isinstance(scalar, str),
          dict: lambda: isinstance(value, dict)}.get(tp, lambda: True)()
    if not ok:
        raise TypeError(f"{cls.__name__}.{name} must be {getattr(tp, '__name__', tp)}, "
                        f"got {type(value).__name__} {getattr(value, 'dtype', '')}".rstrip())
    return tp(scalar) if tp in (bool, int, float, str) else value


# --- one record per family -------------------------------------------------------------------------------

@dataclass(kw_only=True)
class MixtureProbe(Probe):
    """Mixture of Gaussians (notes 4.1), K components, n shown training points.

    Attributes:
        weights: (K,) mixing weights π_k.
        means: (K, 2) component means μ_k, data units.
        covariances: (K, 2, 2) component covariances Σ_k.
        point_labels: (n,) int32, argmax_k p(z = k | x) per shown point (EM: as of the last E-step).
        point_confidence: (n,) max_k p(z = k | x) per shown point.
    """

    kind: ClassVar[str] = "mixture"
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    point_labels: np.ndarray
    point_confidence: np.ndarray


@dataclass(kw_only=True)
class VAEProbe(Probe):
    """Variational autoencoder (notes 4.2-4.5) with a d = 1 or 2 dimensional latent; n shown points, m
    quadrature nodes, R = 81 display nodes per latent axis (models/latent/vae_probe.py).

    Attributes:
        enc_mean, enc_std: (n, d) the encoder's q(z|x) = N(m, diag s²) per shown point (notes 4.4.5).
        latent_axis: (R,) the latent display axis over [-4, 4].
        aggregate: aggregate posterior q(z) = 1/n Σ q(z|x_i) on it: (R,) for d = 1, (R, R) [z2, z1] for d = 2.
        nodes: (m, d) the quadrature nodes z_j in use (a sub-grid of the model's latent grid).
        node_log_w: (m,) log prior weight of each node (midpoint rule for ∫ p(z) dz, notes 4.3.1).
        node_mean, node_sigma: (m, 2) the decoder's p(x|z_j) mean and standard deviation, data units.
        nodes_per_axis: nodes per latent axis of the sub-grid.
        node_spacing: the sub-grid's node spacing h.
        latent_box: half-width of the latent grid's box [-4.5, 4.5]^d.
        quad_check: nats by which log p(x) on a grid half as fine differs (an error bound).
        finer_at_rest: a live frame's grid failed that check where a frame at rest tries finer grids.
        curve_z, curve_x, curve_sigma: d = 1 only: latent axis (R,), decoder mean (R, 2) and σ (R, 2).
        lines_z1, lines_z2: d = 2 only: (L, R, 2) decoder mean along lines of constant z1 / z2.
        line_levels: d = 2 only: (L,) the constant latent values of those lines.
        latent_dim: d.
        k: importance samples of the IWAE bound (notes 4.3.3).
        iwae_objective: trained on IWAE_k rather than the ELBO.
    """

    kind: ClassVar[str] = "vae"
    enc_mean: np.ndarray
    enc_std: np.ndarray
    latent_axis: np.ndarray
    aggregate: np.ndarray
    nodes: np.ndarray
    node_log_w: np.ndarray
    node_mean: np.ndarray
    node_sigma: np.ndarray
    nodes_per_axis: int
    node_spacing: float
    latent_box: float
    quad_check: float
    latent_dim: int
    k: int
    iwae_objective: bool
    curve_z: np.ndarray | None = None
    curve_x: np.ndarray | None = None
    curve_sigma: np.ndarray | None = None
    lines_z1: np.ndarray | None = None
    lines_z2: np.ndarray | None = None
    line_levels: np.ndarray | None = None
    finer_at_rest: bool = False


@dataclass(kw_only=True)
class FlowProbe(Probe):
    """Normalizing flow (notes 5.2-5.4), L layers, pushed layer by layer (models/flows/model.py, warp_probe).

    Attributes:
        stage_lines: (L+1, 18, 25, 2) grid lines of z after 0..L layers, data units (first 9: constant z2).
        stage_nodes: (L+1, 576, 2) a 24 x 24 grid of z nodes after 0..L layers, data units.
        stage_logp: (L+1, 576) exact log p_k at those nodes: log N(z_0) - Σ_{j≤k} log|det| (notes 5.2).
        layer_log_det: (L,) each layer's average log|det ∂z_k/∂z_{k-1}| under the model, nats.
        layer_names: (L,) str, each layer described.
        latent: (n, 2) shown training points pulled back to z = f⁻¹(x) (planar: a numerical inverse,
            so rows may be non-finite).
        target_log_density: fit to a target only: (grid points,) the target's log p* on the session grid.
    """

    kind: ClassVar[str] = "flow"
    stage_lines: np.ndarray
    stage_nodes: np.ndarray
    stage_logp: np.ndarray = _maybe_nonfinite()
    layer_log_det: np.ndarray
    layer_names: np.ndarray
    latent: np.ndarray = _maybe_nonfinite()
    target_log_density: np.ndarray | None = _maybe_nonfinite(None)


@dataclass(kw_only=True)
class StudentProbe(FlowProbe):
    """MAF teacher -> IAF student (notes 5.4.6): the flow fields for the flow being trained (the teacher
    in phase 1, the student in phase 2), and the teacher's density on every other grid node.

    Attributes:
        teacher_log_density: (ny, nx) the teacher's log-density on the sub-grid.
        teacher_x, teacher_y: (nx,), (ny,) the sub-grid's axes.
        teacher_steps: training steps of phase 1 (the teacher).
        phase: "teacher" or "student".
    """

    kind: ClassVar[str] = "student"
    teacher_log_density: np.ndarray
    teacher_x: np.ndarray
    teacher_y: np.ndarray
    teacher_steps: int
    phase: str


@dataclass(kw_only=True)
class GANProbe(Probe):
    """GANs, f-GANs and WGANs (notes ch. 6).

    Attributes:
        surface: (grid points,) the discriminator surface on the session grid, row by row: D(x) for the
            classic GAN, T(x) for an f-GAN, the critic f(x) for a WGAN (may overflow: the view masks it).
        fake_xy: (128, 2) tracked fakes G(z) for fixed z.
        fake_push: (128, 2) the generator's push -∇ₓ l_G at each tracked fake.
        surface_mid: the surface's "cannot tell" value (D = 1/2, T = f'(1), or a critic's real/fake midpoint).
        latent_dim: the generator's latent dimension.
        manifold_u: (lines, points, 2) G along lines of constant z2 (latent_dim 1: (1, 200, 2), one curve).
        manifold_v: (lines, points, 2) G along lines of constant z1; absent for latent_dim 1.
        averaged: whether the samples and the manifold are those of the weight-averaged generator Ḡ (the
            tracked fakes and their push are always the trained G's: the player D faces).
        surface_label / divergence_label: what the heatmap shows and what the divergence curve estimates.
        wasserstein: a Wasserstein critic (no fixed "cannot tell" value; the divergence is a gap, not nats).
        probability: the surface is a probability (D of the classic GAN), in [0, 1].
        equilibrium_d / equilibrium_g: the players' losses when G has won (p = q); NaN where there is none.
        latent_codes: BiGAN only (notes 6.9): (≤ 600, 2) the encoder's codes E(x) of the shown data, (z₁, z₂).
        reconstructions: BiGAN only: (m, 2) G(E(x)) for m of the shown data points x, data units.
        recon_from: BiGAN only: (m, 2) those points x (each reconstruction's start).
        source: CycleGAN only (notes 6.10): the source domain X's dataset name (the data are Y); else None.
        source_xy: CycleGAN only: (≤ 300, 2) points of X.
        map_from: CycleGAN only: (m, 2) held-out points x of X; translated: (m, 2) G(x); cycled: (m, 2) F(G(x)).
        reverse_xy: CycleGAN only: (≤ 300, 2) F(y) of the shown data y, the reverse map's fakes in X.
    """

    kind: ClassVar[str] = "gan"
    surface: np.ndarray = _maybe_nonfinite()
    fake_xy: np.ndarray
    fake_push: np.ndarray
    surface_mid: float
    latent_dim: int
    manifold_u: np.ndarray
    manifold_v: np.ndarray | None = None
    averaged: bool = False
    surface_label: str = "D(x)"
    divergence_label: str = "divergence estimate"
    wasserstein: bool = False
    probability: bool = False
    equilibrium_d: float = float("nan")
    equilibrium_g: float = float("nan")
    latent_codes: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    recon_from: np.ndarray | None = None
    source: str | None = None
    source_xy: np.ndarray | None = None
    map_from: np.ndarray | None = None
    translated: np.ndarray | None = None
    cycled: np.ndarray | None = None
    reverse_xy: np.ndarray | None = None


@dataclass(kw_only=True)
class EBMProbe(Probe):
    """Energy-based models (notes ch. 7); the energy itself is the session's log-density plus log Z.

    Attributes:
        score_xy: (289, 2) a 17 x 17 grid of points, data units.
        score: (289, 2) the score ∇ₓ log p there (notes 7.4).
        chains: (t, 8, 2) the recent path of the animated display chains, data units (t may be 0).
        negatives: contrastive divergence only: (≤ 500, 2) the negatives of the last update (notes 7.3).
        noise_mean, noise_cov: NCE only: (2,), (2, 2) the noise distribution p_n in data units (notes 7.5).
        flow_log_density: an EBM trained against a flow q_φ only (flow contrastive estimation, notes 7.5.1;
            adversarial training, 7.6): (grid points,) q_φ's exact, normalised log q(x) on the session grid.
        flow_samples: the same models: (≤ 300, 2) samples of q_φ from the last update, data units.
        flow_label: the same models: what the views call q_φ ("flow q (FCE's noise)", ...).
    """

    kind: ClassVar[str] = "ebm"
    score_xy: np.ndarray
    score: np.ndarray
    chains: np.ndarray
    negatives: np.ndarray | None = None
    noise_mean: np.ndarray | None = None
    noise_cov: np.ndarray | None = None
    flow_log_density: np.ndarray | None = None
    flow_samples: np.ndarray | None = None
    flow_label: str | None = None


@dataclass(kw_only=True)
class _ARProbe(Probe):
    """What both kinds of autoregressive model give (notes ch. 3), order x_first -> x_second.

    Attributes:
        discrete: True for the binned models (FVSBN, NADE, MADE), False for RNADE.
        first: the coordinate sampled first (0: x1, 1: x2).
        log_marg: log p(x_first) per unit length: (K,) per bin, or on marg_x (RNADE).
        conn: the network drawing (models.autoregressive.conn_dict): "columns" (titles), "nodes" (names per
            column), "labels" (int32 MADE labels per column), "edges" (float32 (n_out, n_in) |W·mask| per
            pair of columns), "totals" (full widths).
    """

    discrete: bool
    first: int
    log_marg: np.ndarray
    conn: dict[str, Any]


@dataclass(kw_only=True)
class AutoregressiveProbe(_ARProbe):
    """FVSBN, NADE and MADE over K x K bins (notes 3.1): the exact table and its two factors.

    Attributes:
        edges: (2, K+1) bin edges of x1 and x2, data units.
        log_bin_area: log of one cell's area.
        log_density: (K, K) [bin of x2, bin of x1] log P(cell) / area, nats per unit area.
        marg_edges: (K+1,) the edges of x_first (log_marg is per bin of these).
        slice_at: (K,) the bin centres of x_first.
        cond_edges: (K+1,) the edges of x_second.
        log_cond: (K, K) [bin of x_first, bin of x_second] log p(x_second | x_first) per unit length.
    """

    kind: ClassVar[str] = "autoregressive"
    discrete: bool = True
    edges: np.ndarray
    log_bin_area: float
    log_density: np.ndarray
    marg_edges: np.ndarray
    slice_at: np.ndarray
    cond_edges: np.ndarray
    log_cond: np.ndarray

    def __post_init__(self):
        if not self.discrete:
            raise ValueError("AutoregressiveProbe is the binned models' record: discrete must be True")


@dataclass(kw_only=True)
class RNADEProbe(_ARProbe):
    """RNADE (notes 3.1.3): the exact marginal of x_first on the grid's axis; the conditional on a grid line
    is the session's joint there minus this marginal.

    Attributes:
        marg_x: (grid res,) the grid's x_first axis, data units (log_marg is on it).
    """

    kind: ClassVar[str] = "rnade"
    discrete: bool = False
    marg_x: np.ndarray

    def __post_init__(self):
        if self.discrete:
            raise ValueError("RNADEProbe is the continuous model's record: discrete must be False")


@dataclass(kw_only=True)
class DiffusionProbe(Probe):
    """Diffusion and flow matching (models/diffusion): K noise levels, a 17 x 17 grid of arrows, R x R grid of the
    noised data's density, m noised points per level, 8 reverse trajectories of S steps. Data units throughout.

    Attributes:
        level_t, level_alpha, level_sigma: (K,) the levels' times t (data end first, t = 1 last), α_t and σ_t
            (standardised units) of x_t = α_t x_0 + σ_t ε.
        field_xy: (289, 2) the arrows' positions.
        field: (K, 289, 2) the learned field at each level: the score ∇ₓ log p_t (noise-predicting models) or −v,
            the direction a sample moves (flow matching); field_label says which.
        noised_x, noised_y: (R,) the axes of the noised density's grid.
        noised_log_density: (K, R, R) [level, y, x] log q_t(x) of the forward process applied to the shown
            training points (exact, a mixture of their Gaussian kernels; the data end's kernel floored for display).
        noised_points: (K, m, 2) noised copies of m training points (fixed noise).
        path_t, ode_paths: (S+1,) times and (S+1, 8, 2) trajectories of the deterministic sampler from t = 1.
        sde_t, sde_paths: the same for the model's stochastic sampler from the same draws (None: it has none).
        ode_label, sde_label: the two samplers' names.
        prediction: "eps" (noise prediction) or "velocity"; path_name: the path ("linear", "cosine", "ve", ...).
        sampler, sample_steps: the sampler the frame's samples come from (its name) and its steps.
        langevin_steps: annealed Langevin's steps per level (its cost per level in network evaluations).
        ode_steps, density_ode_steps: RK4 steps of the likelihood, and of this frame's density grid (fewer while
            training runs).
    """

    kind: ClassVar[str] = "diffusion"
    level_t: np.ndarray
    level_alpha: np.ndarray
    level_sigma: np.ndarray
    field_xy: np.ndarray
    field: np.ndarray
    field_label: str
    noised_x: np.ndarray
    noised_y: np.ndarray
    noised_log_density: np.ndarray
    noised_points: np.ndarray
    path_t: np.ndarray
    ode_paths: np.ndarray
    ode_label: str
    sde_label: str = ""
    sde_t: np.ndarray | None = None
    sde_paths: np.ndarray | None = None
    prediction: str = "eps"
    path_name: str = ""
    sampler: str = ""
    sample_steps: int = 0
    langevin_steps: int = 1
    ode_steps: int = 0
    density_ode_steps: int = 0


PROBES: dict[str, type[Probe]] = {c.kind: c for c in (MixtureProbe, VAEProbe, FlowProbe, StudentProbe, GANProbe,
                                                      EBMProbe, AutoregressiveProbe, RNADEProbe,
                                                      DiffusionProbe)}


def make_probe(kind: str, d: dict[str, Any] | None) -> Probe | None:
    """The record of a model's probe() output: None for an empty dict (or kind "none" with nothing).

    Raises:
        KeyError: an unknown kind, a kind "none" model that returned keys, or a key its record lacks.
        TypeError: a value of the wrong type.
    """
    if not d:
        return None
    if kind not in PROBES:
        raise KeyError(f"no probe record of kind {kind!r} for keys {sorted(d)} (known: {', '.join(PROBES)}); "
                       f"set the model's probe_kind")
    return PROBES[kind].from_dict(d)


@dataclass
class Snapshot:
    """Everything a frame shows, as plain numpy: the only thing that crosses to the plots."""

    step: int
    status: str  # idle | running | stopped | diverged | done
    message: str
    model_key: str
    family: str
    density: str
    box: tuple[float, float, float, float]
    train: np.ndarray
    test: np.ndarray
    samples: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    grid_x: np.ndarray | None = None
    grid_y: np.ndarray | None = None
    log_density: np.ndarray | None = None  # (ny, nx), normalised where the family allows
    grid_mass: float | None = None  # probability mass of the density on the grid
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    probe: Probe | None = None  # the family's probe record (make_probe), None before a model has one
    data_nll: float | None = None  # held-out NLL under the true density, when known
    steps_per_sec: float = 0.0
    elapsed: float = 0.0
    device: str = "cpu"
    dataset: str = ""
    event: str = ""  # what set `message`: "early_stop" (back to the held-out minimum), "substep" (a named part of a
    # step, EM's E or M), "action" (a tab's own
    # button, e.g. the GAN tab's one D step), "" (training, stopping, a failure): what a status line shows it for
