"""The one interface every 2D generative model of the playground implements.

A model is a ``torch.nn.Module`` subclass of :class:`Model2D`, registered under a short key
(``mog``, ``realnvp``, ``wgan_gp`` ...). Its hyperparameters live in a ``Config`` dataclass whose
fields carry their range, step and help text (see :func:`hp`), so the command line validates
them and the UI generates its controls from them, from one source.

This module is PyTorch only: it never imports gradio or plotly.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

DENSITY_KINDS = ("exact", "quadrature", "unnormalized", "bound", "none")


def hp(default: Any, lo: float | None = None, hi: float | None = None, *, step: float | None = None,
       choices: tuple | None = None, log: bool = False, help: str = "", label: str | None = None,
       live: bool = False):
    """A hyperparameter field: its default, its safe range and how a control should show it.

    Args:
        default: the default value (its type is the field's type: bool, int, float or str).
        lo, hi: the inclusive safe range of a number.
        step: the slider step (ints default to 1).
        choices: the allowed values of a string (a dropdown).
        log: show the number on a log10 slider (learning rates, step sizes).
        help: one line shown under the control.
        label: the control's label (defaults to the field name with spaces).
        live: may change while training runs (the model's :meth:`Model2D.live_update` applies it).
    """
    meta = dict(lo=lo, hi=hi, step=step, choices=choices, log=log, help=help, label=label, live=live)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A hyperparameter value outside its field's range or choices (the message says which)."""


class RenamedSettingWarning(FutureWarning):
    """A hyperparameter given under its old name (BaseConfig.renamed): taken under its new one. A FutureWarning,
    so that it shows by default (a saved checkpoint or a script's old name reaches its user)."""


@dataclass
class BaseConfig:
    """Base of every model's Config: validation from the field metadata of :func:`hp`.

    ``renamed`` maps a hyperparameter's old names to its current ones (old -> new), for every way a name comes
    from outside: :meth:`make`, :meth:`coerce`, :meth:`replace` (and so :func:`build` and a saved checkpoint's
    :func:`load`) take an old name as its new one and warn once (RenamedSettingWarning, the note of
    :meth:`canonical`); the command line and the share links ask :meth:`canonical` and tell their user
    themselves. A Config inherits its base's ``renamed``; an old name is never a current field."""

    renamed: ClassVar[dict[str, str]] = {}

    @classmethod
    def canonical(cls, name: str) -> tuple[str, str | None]:
        """(the current name of `name`, a one-line note when `name` is an old one, else None). A current or an
        unknown name comes back as it is, without a note (coerce then refuses an unknown one)."""
        new = cls.renamed.get(name)
        if new is None or name in {f.name for f in cls.fields()}:
            return name, None
        return new, f"'{name}' is now '{new}'"

    @classmethod
    def _current(cls, name: str) -> str:
        """`name`'s current name, warning (RenamedSettingWarning) when it is an old one."""
        new, note = cls.canonical(name)
        if note:
            warnings.warn(f"{cls.__name__}: {note}", RenamedSettingWarning, stacklevel=4)
        return new

    @classmethod
    def _current_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        """`values` under current names (see renamed); an old name and its new one both given are refused."""
        seen: dict[str, str] = {}
        for k in values:
            new = cls.canonical(k)[0]
            if new in seen:
                old = k if k != new else seen[new]
                raise ConfigError(f"'{old}' and '{new}' name the same setting ('{old}' is now '{new}'): give one")
            seen[new] = k
        return {cls._current(k): v for k, v in values.items()}

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def spec(cls) -> list[dict]:
        """Each field as a plain dict (name, type, default, range...) for `list --json` and the UI."""
        out = []
        for f in cls.fields():
            m = dict(f.metadata)
            out.append(dict(name=f.name, type=type(f.default).__name__, default=f.default,
                            min=m.get("lo"), max=m.get("hi"), step=m.get("step"),
                            choices=list(m["choices"]) if m.get("choices") else None,
                            log=m.get("log", False), help=m.get("help", ""),
                            label=m.get("label") or f.name.replace("_", " "),
                            live=m.get("live", False)))
        return out

    @classmethod
    def coerce(cls, name: str, value: Any) -> Any:
        """Turn ``value`` (possibly a string from the command line) into field ``name``'s type and
        check it against the field's range or choices. Raises ConfigError with a one-line reason. An old name
        (see renamed) is checked as its new one, with a RenamedSettingWarning."""
        by_name = {f.name: f for f in cls.fields()}
        if name not in by_name:
            name = cls._current(name)
        if name not in by_name:
            raise ConfigError(f"unknown setting '{name}' (known: {', '.join(by_name)})")
        f = by_name[name]
        kind = type(f.default)
        m = f.metadata
        try:
            if kind is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError
                    value = low in ("1", "true", "yes", "on")
                else:
                    value = bool(value)
            elif kind is int:
                fv = float(value)
                if not math.isfinite(fv) or fv != int(fv):
                    raise ValueError
                value = int(fv)
            elif kind is float:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: '{value}' is not a valid {kind.__name__}") from None
        if m.get("choices") and value not in m["choices"]:
            raise ConfigError(f"{name}: '{value}' is not one of {', '.join(map(str, m['choices']))}")
        lo, hi = m.get("lo"), m.get("hi")
        if kind in (int, float) and lo is not None and hi is not None and not lo <= value <= hi:
            raise ConfigError(f"{name}: {value} is outside the safe range [{lo}, {hi}]")
        return value

    @classmethod
    def make(cls, **values: Any):
        """A validated Config from keyword values (unknown names and bad values raise ConfigError; old names, see
        renamed, are taken as their new ones with a RenamedSettingWarning)."""
        return cls(**{k: cls.coerce(k, v) for k, v in cls._current_names(values).items()})

    def replace(self, **values: Any):
        return dataclasses.replace(self, **{k: self.coerce(k, v) for k, v in self._current_names(values).items()})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainSettings(BaseConfig):
    """Settings every model shares: the optimiser's learning rate, the batch size and the seed."""

    lr: float = hp(3e-3, 1e-5, 1.0, log=True, live=True, label="learning rate",
                   help="Adam's step size; can be changed while training runs")
    batch: int = hp(256, 8, 4096, step=8, label="batch size",
                    help="points per gradient step (EM: a batch ≥ the training set is full-batch EM)")
    seed: int = hp(0, 0, 2**31 - 1, label="seed", help="same seed, same data split and same run")


REGISTRY: dict[str, type[Model2D]] = {}


def register(cls: type[Model2D]) -> type[Model2D]:
    """Class decorator: adds a model class to REGISTRY under its ``key``."""
    if not getattr(cls, "key", None):
        raise TypeError(f"{cls.__name__} has no key")
    if cls.key in REGISTRY and REGISTRY[cls.key] is not cls:
        raise KeyError(f"model key '{cls.key}' registered twice")
    if cls.density not in DENSITY_KINDS:
        raise ValueError(f"{cls.__name__}.density must be one of {DENSITY_KINDS}")
    REGISTRY[cls.key] = cls
    return cls


FAMILIES = ("autoregressive", "latent", "flow", "gan", "ebm", "diffusion")  # the notes' chapters 3 to 7, then
# the family they lead to


def family_keys(family: str) -> list[str]:
    """The registered models of `family` in menu order (Model2D.menu_rank, then registration order): what a
    tab offers, so that a new model appears in its family's tab by registering itself."""
    keys = [k for k, c in REGISTRY.items() if c.family == family]
    return sorted(keys, key=lambda k: (REGISTRY[k].menu_rank, keys.index(k)))


def all_keys() -> list[str]:
    """Every registered model, family by family in the order of the notes, each family in menu order."""
    known = [k for f in FAMILIES for k in family_keys(f)]
    return known + [k for k in REGISTRY if k not in known]


def compare_keys() -> list[str]:
    """The models a comparison trains when none are named (Model2D.in_compare), in all_keys() order."""
    return [k for k in all_keys() if REGISTRY[k].in_compare]


class Standardizer(nn.Module):
    """An affine map z = (x - shift) / scale fitted to the training data, kept as buffers.

    A model that works in standardised coordinates adds :meth:`log_det` to its log-density so the
    likelihood stays in the data's own coordinates (change of variables, notes 5.1):
    log p_x(x) = log p_z(z) + log|det dz/dx| = log p_z(z) - sum(log scale).
    """

    def __init__(self, dim: int = 2):
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Shift: the mean; scale: each column's standard deviation, floored at 1e-3 of the larger one (a
        flat column, points on a line, still gets a finite scale) and at the smallest normal float. A floor
        in absolute units would leave data whose spread is below it (micrometres in metres) far from unit
        scale; the floor is relative, so every spread the data check accepts is standardised alike."""
        std = x.double().std(0)
        floor = max(1e-3 * float(std.max()), torch.finfo(x.dtype).tiny)
        self.shift.copy_(x.double().mean(0))
        self.scale.copy_(std.clamp_min(floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.shift

    def log_det(self) -> torch.Tensor:
        """log|det dz/dx|, the same for every point."""
        return -torch.log(self.scale).sum()


RNG_PURPOSES = {"train": 1, "view": 2}  # a model's own generators, offsets from the run's seed


class RunGenerators:
    """A model's own random generators, one per purpose: "train" (what a step draws: noise, negatives,
    fakes) and "view" (what frames and metrics draw), so drawing a frame never changes the training run
    and no run draws from torch's global generator, which every session of the process shares.

    Seeded from the run's seed (the Session calls torch.manual_seed(settings.seed) before building the
    model; `_seed` keeps it) plus the purpose's offset: the same seed gives the same run whoever else is
    training. The Session finds these generators (`_gens`) and saves their states in every checkpoint."""

    _seed: int = 0
    _gens: dict

    def _init_generators(self) -> None:
        self._seed = torch.initial_seed()
        self._gens = {}

    def rng(self, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator for `purpose` on `device` (made afresh from the seed when the device changed)."""
        dev = torch.device(device)
        g = self._gens.get(purpose)
        if g is None or g.device.type != dev.type:
            g = torch.Generator(device=dev).manual_seed((self._seed + RNG_PURPOSES[purpose]) % 2 ** 63)
            self._gens[purpose] = g
        return g

    def reset_generators(self, device: torch.device | str = "cpu") -> None:
        """Start every stream from the seed again, all made now, so that a checkpoint of the session holds
        their states from step 0 (init_from_data calls this)."""
        self._gens.clear()
        for purpose in RNG_PURPOSES:
            self.rng(purpose, device)


class Model2D(RunGenerators, nn.Module):
    """Base class of every playground model (see ../shared/ARCHITECTURE.md, "The model interface").

    Class attributes:
        key: registry key, used by the CLI (`python -m playground train KEY`).
        family: the tab it belongs to ("latent", "flow", "gan", "ebm", "autoregressive", "diffusion").
        title: a human name for menus.
        density: "exact" (log_prob is a normalised log-density in closed form), "quadrature" (normalised
            by the model's own numerical integral, a grid over the data space (EBMs: log Z) or the latent
            space (VAE: log p(x) = log ∫ p(x|z) p(z) dz) or time (diffusion: the probability-flow ODE's
            ∫ tr ∂v/∂x dt), whose error it reports), "unnormalized" (log_prob is
            f(x); the session normalises it on a grid), "bound" (log_prob is estimated, e.g. by
            latent integration, and the loss is a bound) or "none" (no density: GANs).
        probe_kind: which typed record of playground/snapshot.py (PROBES) the dict returned by
            :meth:`probe` fills: "mixture", "vae", "flow", "student", "gan", "ebm", "autoregressive",
            "rnade", "diffusion", or "none" (no probe). A plain string: models never import the playground.
        Config: the model's hyperparameters (a BaseConfig dataclass).
    """

    key: ClassVar[str] = ""
    family: ClassVar[str] = ""
    title: ClassVar[str] = ""
    density: ClassVar[str] = "exact"
    probe_kind: ClassVar[str] = "none"
    Config: ClassVar[type[BaseConfig]] = BaseConfig
    menu_rank: ClassVar[float] = 100  # its place in its family's menu (family_keys): lower first, then registration
    in_compare: ClassVar[bool] = False  # a default model of a comparison (compare_keys)

    def __init__(self, cfg: BaseConfig | None = None):
        super().__init__()
        self.cfg = cfg if cfg is not None else self.Config()
        self._init_generators()  # the run's own random streams (RunGenerators), made now from the run's seed
        self.reset_generators()

    # --- training -----------------------------------------------------------------------------
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (k-means++ seeding, standardisation). Default: nothing."""

    def configure_optimizers(self, settings: TrainSettings) -> dict[str, torch.optim.Optimizer]:
        """The optimisers :meth:`step` uses. Default: one Adam over all parameters."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return {}
        return {"main": make_adam(params, settings.lr)}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective on a batch x of shape (n, 2): key "loss" is minimised, others are logged."""
        raise NotImplementedError

    # --- hooks the session and the checks use (declared here, overridden where a model has them) ----------
    frame_is_live: bool = False  # set by the session while it draws a frame of a running run: such frames may be
    # drawn more cheaply (the VAE: its configured latent grid only); frames at rest get the model's full accuracy
    full_batch: bool = False  # set by the session before each step: the batch is the whole training set (EM's
    # M-step is then exact rather than a running average)
    grad_exempt: tuple[str, ...] = ()  # name prefixes of parameters the objective gives no gradient (score
    # matching's constant, the frozen flow of a distillation phase): the contract test skips them
    substep_names: tuple[str, ...] = ()  # a step in named parts that the Step button walks through (EM: E, M)

    def substep(self, x: torch.Tensor, phase: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Part `phase` of a step (see substep_names) on batch x. Only models with substep_names have one."""
        raise NotImplementedError(f"{self.key} has no sub-steps")

    def sample_labeled(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """n samples with the component each came from ((n, 2), (n,) int), for models whose samples have one
        (a mixture's z); None where they do not (the default): the session then calls :meth:`sample`."""
        return None

    density_refresh: float = 0.0  # a live frame redraws the density grid at most this often (seconds; 0: every frame)
    # and repeats the last grid in between: for densities that cost a tenth of a second a grid (an ODE per point)
    frame_share: float | None = None  # frames while running take at most this share of the time (None: the session's
    # MAX_FRAME_SHARE); a family that trains to a picture in seconds and whose frames cost more may spend more
    eval_share: float = 0.02  # held-out metrics while running take at most this share of the time
    live_nll_points: int = 5000  # ... on at most this many held-out (and training) points; at rest: all of them

    max_grad_norm: float | None = None  # default step: clip the gradient's global norm to this first (None: don't)

    def step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One update on batch x. Default: zero_grad, backward of loss()["loss"], the gradient's global norm
        clipped to :attr:`max_grad_norm` where the family sets one, optimiser step."""
        opt = optimizers["main"]
        opt.zero_grad(set_to_none=True)
        terms = self.loss(x)
        terms["loss"].backward()
        if self.max_grad_norm is not None:
            clip_grad_norm(opt, self.max_grad_norm)
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def live_update(self, name: str, value: Any, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Apply a setting changed while training runs. Default: "lr" sets every optimiser's lr."""
        if name == "lr":
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = float(value)
            return
        name = self.cfg.canonical(name)[0]
        if hasattr(self.cfg, name):
            setattr(self.cfg, name, self.cfg.coerce(name, value))

    # --- what the views and metrics need ------------------------------------------------------
    def sample(self, n: int) -> torch.Tensor:
        """n samples of shape (n, 2)."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of shape (n,) (unnormalised f(x) when density == "unnormalized")."""
        raise NotImplementedError(f"{type(self).__name__} has no density")

    def grid_log_prob(self, grid: torch.Tensor) -> torch.Tensor:
        """log p on a frame's density grid (the picture, not a held-out number). Default: :meth:`log_prob`; a model
        whose density costs an ODE per point may draw it more cheaply, and says so in its probe."""
        return self.log_prob(grid)

    def advance_display(self) -> None:
        """Move what the model keeps only to be shown (an EBM's display chains) to the next frame. The session
        calls it once per frame, before :meth:`probe`; nothing else may change that state, so drawing a frame
        (probe, sample, log_prob) never does. Default: nothing."""

    def probe(self, grid: torch.Tensor, points: torch.Tensor) -> dict[str, np.ndarray]:
        """What this family can show: values on the (m, 2) grid and on the shown data points, as numpy.
        The keys are exactly the fields of the record named by :attr:`probe_kind` (strictly checked).
        It reads the model and changes nothing (see advance_display)."""
        return {}

    def metrics(self, x_test: torch.Tensor) -> dict[str, float]:
        """Family-specific held-out metrics, logged as curves every frame and reported by the CLI
        (a VAE's test_elbo / test_iwae, NCE's learned log Z, a GAN's divergence estimate)."""
        return {}

    def source_domain(self) -> str | None:
        """The built-in dataset a model maps from, besides the data it trains on (a CycleGAN's source domain X,
        notes 6.10), or None. The session samples it with the run's seed and hands it to :meth:`use_source`."""
        return None

    def use_source(self, train: torch.Tensor, test: torch.Tensor, name: str) -> None:
        """Told the points of :meth:`source_domain` (train / held-out split, on the model's device), before
        :meth:`init_from_data`. Default: ignore."""

    def use_target(self, log_prob, name: str) -> None:
        """Told the data's true log-density when it is known in closed form (a differentiable torch
        function, or None): models that fit a density by reverse KL keep it. Default: ignore."""

    # --- persistence --------------------------------------------------------------------------
    def save(self, path) -> None:
        torch.save({"key": self.key, "config": self.cfg.as_dict(), "state": self.state_dict()}, path)


@torch.no_grad()
def update_average(averaged: list[torch.Tensor], live: list[torch.Tensor], decay: float, t: int,
                   every: int = 1) -> None:
    """One update of a weight average taken every `every` steps (t: the steps so far, before this one):
    θ̄ ← d_t^every θ̄ + (1 − d_t^every) θ with d_t = min(decay, (1 + t)/(10 + t)), the exponential moving
    average of every step's weights (Polyak & Juditsky 1992) sampled every `every` steps, its decay warmed up
    so that the first steps show at once. One fused op over all the tensors."""
    d = min(decay, (1.0 + t) / (10.0 + t)) ** every
    torch._foreach_lerp_(averaged, live, 1.0 - d)


def clip_grad_norm(opt: torch.optim.Optimizer, max_norm: float) -> None:
    """Scale the gradients of `opt`'s parameters so that their global L2 norm is at most max_norm (Pascanu et al.
    2013), for opt's next step. A fused Adam (make_adam) is told the factor as its `grad_scale`, which its kernel
    divides the gradients by: ~90 µs for a flow's 48 tensors here, half of torch.nn.utils.clip_grad_norm_'s ~190
    (4-6% of a flow's step); any other optimiser gets clip_grad_norm_ itself."""
    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    if isinstance(opt, torch.optim.Adam) and opt.defaults.get("fused"):
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        opt.grad_scale = (total / max_norm).clamp_(min=1.0)
    else:
        torch.nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]], max_norm)


def make_adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam, fused where the parameters' device supports it (1.3x faster steps on this CPU,
    ../shared/PERFORMANCE.md)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def build(key: str, **config: Any) -> Model2D:
    """A model from its registry key and (validated) hyperparameters."""
    if key not in REGISTRY:
        raise KeyError(f"unknown model '{key}' (known: {', '.join(sorted(REGISTRY))})")
    cls = REGISTRY[key]
    return cls(cls.Config.make(**config))


def load(path, map_location="cpu") -> Model2D:
    blob = torch.load(path, map_location=map_location, weights_only=True)
    model = build(blob["key"], **blob["config"])
    model.load_state_dict(blob["state"])
    return model
