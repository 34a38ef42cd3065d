"""Two labelled classes in 2D: generative classifiers against discriminative ones (notes 2.2).

A *generative* classifier models the joint p(x, y) = p(y) p(x | y) and classifies by Bayes' rule
(notes 2.2.1); a *discriminative* one models p(y | x) alone (notes 2.2.2). Only the first can sample
points, score p(x) (held-out NLL, in nats) and classify a point whose coordinate is missing, by
marginalising it: for Gaussians that is closed form.

* :class:`GaussianClassifier` with ``full=False`` is Gaussian naive Bayes (a diagonal covariance per
  class: the features independent given the label), with ``full=True`` the class-conditional
  full-covariance model (QDA). Both are fitted in closed form (maximum likelihood).
* :class:`LogisticRegression`: p(y=1|x) = σ(wᵀx + b), fitted by Newton's method (IRLS) with a small L2
  penalty so that separable data keep a finite optimum; no randomness.
* :class:`MLPClassifier`: a small tanh network, full-batch Adam, initialised from its own
  torch.Generator (never the global RNG).

numpy and torch only: no gradio, no plotly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)
EPS = 1e-12  # probabilities clipped away from 0 and 1 in the log-loss
VAR_FLOOR = 1e-6  # added to variances: a class of identical points stays a proper Gaussian
MAX_PER_CLASS = 20000


# --- data: two labelled classes ----------------------------------------------------------------------

def _gauss(n: int, rng: np.random.Generator, mean, cov) -> np.ndarray:
    return rng.standard_normal((n, 2)) @ np.linalg.cholesky(np.asarray(cov, float)).T + np.asarray(mean, float)


# the two-Gaussians set is QDA's own model: its true parameters (tests compare against Bayes' rule on them)
TRUE_GAUSSIANS = {"means": np.array([[-1.0, -0.3], [1.0, 0.6]]),
                  "covs": np.array([[[1.0, 0.55], [0.55, 0.8]], [[0.35, -0.25], [-0.25, 1.4]]])}


def two_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    m, c = TRUE_GAUSSIANS["means"], TRUE_GAUSSIANS["covs"]
    return _gauss(n, rng, m[0], c[0]), _gauss(n, rng, m[1], c[1])


def two_moons(n: int, rng: np.random.Generator, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    t0, t1 = np.pi * rng.random(n), np.pi * rng.random(n)
    upper = np.stack([np.cos(t0), np.sin(t0)], 1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)
    f = lambda a: (a + noise * rng.standard_normal(a.shape) - [0.5, 0.25]) * 1.6  # noqa: E731
    return f(upper), f(lower)


def xor_blobs(n: int, rng: np.random.Generator, std: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Four blobs: class 1 on the diagonal (++, --), class 0 off it (+-, -+)."""
    def blobs(centres):
        c = np.asarray(centres, float)[rng.integers(0, 2, n)]
        return c + std * rng.standard_normal((n, 2))
    return blobs([[1.2, -1.2], [-1.2, 1.2]]), blobs([[1.2, 1.2], [-1.2, -1.2]])


@dataclass(frozen=True)
class LabelledSet:
    title: str
    fn: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    description: str


LABELLED = {
    "gaussians": LabelledSet("Two Gaussians (different covariances)", two_gaussians,
                             "each class one Gaussian: QDA is the true model, naive Bayes drops the correlations"),
    "moons": LabelledSet("Two moons", two_moons, "interleaved half circles: no Gaussian fits a class well"),
    "xor": LabelledSet("XOR: four blobs", xor_blobs,
                       "class 1 on the diagonal, class 0 off it: no line separates them"),
}


@dataclass
class LabelledData:
    """A train/test split of two labelled classes; box = (xmin, xmax, ymin, ymax), square, holding all points."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    box: tuple[float, float, float, float]


def make_labelled(name: str, n_per_class: int, seed: int = 0, test_fraction: float = 0.3) -> LabelledData:
    """`n_per_class` points of each class from the seeded set `name`, shuffled and split."""
    if name not in LABELLED:
        raise ValueError(f"unknown dataset '{name}' (one of {', '.join(LABELLED)})")
    n = int(n_per_class)
    if not 10 <= n <= MAX_PER_CLASS:
        raise ValueError(f"points per class must be between 10 and {MAX_PER_CLASS:,}, not {n}")
    if int(seed) < 0:
        raise ValueError(f"the seed must be ≥ 0, not {seed}")
    rng = np.random.default_rng(int(seed))
    x0, x1 = LABELLED[name].fn(n, rng)
    x = np.concatenate([x0, x1]).astype(np.float64)
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    order = rng.permutation(2 * n)
    x, y = x[order], y[order]
    n_test = max(2, int(round(test_fraction * 2 * n)))
    lo, hi = x.min(0), x.max(0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * 1.12
    box = (float(centre[0] - half), float(centre[0] + half), float(centre[1] - half), float(centre[1] + half))
    return LabelledData(name, x[n_test:], y[n_test:], x[:n_test], y[:n_test], box)


def grid(box, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, points (n*n, 2) row by row: y outer, x inner), the layout of a Plotly heatmap's z."""
    xs = np.linspace(box[0], box[1], n)
    ys = np.linspace(box[2], box[3], n)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], 1)


# --- generative: Gaussian class conditionals ------------------------------------------------------

class GaussianClassifier:
    """p(x, y) = p(y) N(x; μ_y, Σ_y), fitted by maximum likelihood (notes 2.2.1).

    full=False: Σ_y diagonal, i.e. Gaussian naive Bayes, p(x|y) = Π_i p(x_i|y);
    full=True: Σ_y a full covariance (quadratic discriminant analysis)."""

    generative = True

    def __init__(self, full: bool):
        self.full = bool(full)
        self.key = "qda" if full else "nb"
        self.title = "Gaussian QDA (full covariance)" if full else "Gaussian naive Bayes"
        self.priors = self.means = self.covs = None

    @property
    def variances(self) -> np.ndarray:
        """(2 classes, 2 dims): the per-class per-dimension variances (the diagonal of Σ_y)."""
        return np.stack([np.diag(c) for c in self.covs])

    def fit(self, x: np.ndarray, y: np.ndarray) -> GaussianClassifier:
        x, y = np.asarray(x, np.float64), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 2 or len(x) != len(y):
            raise ValueError("expected points (n, 2) and as many labels")
        counts = np.array([(y == k).sum() for k in (0, 1)])
        if (counts < 2).any():
            raise ValueError("each class needs at least two training points")
        self.priors = counts / counts.sum()
        self.means = np.stack([x[y == k].mean(0) for k in (0, 1)])
        covs = []
        for k in (0, 1):
            d = x[y == k] - self.means[k]
            c = d.T @ d / len(d)  # the maximum-likelihood (biased) covariance
            covs.append((c if self.full else np.diag(np.diag(c))) + VAR_FLOOR * np.eye(2))
        self.covs = np.stack(covs)
        return self

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """(n, 2): log p(x, y=k) = log p(y=k) + log N(x; μ_k, Σ_k)."""
        x = np.asarray(x, np.float64).reshape(-1, 2)
        out = []
        for k in (0, 1):
            inv = np.linalg.inv(self.covs[k])
            d = x - self.means[k]
            maha = np.einsum("ni,ij,nj->n", d, inv, d)
            out.append(math.log(self.priors[k]) - 0.5 * (maha + np.linalg.slogdet(self.covs[k])[1] + 2 * LOG_2PI))
        return np.stack(out, 1)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x) = log Σ_y p(x, y): the mixture over the classes, (n,)."""
        return np.logaddexp(*self.log_joint(x).T)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """p(y=1 | x) by Bayes' rule, (n,)."""
        lj = self.log_joint(x)
        return np.exp(lj[:, 1] - np.logaddexp(lj[:, 0], lj[:, 1]))

    def sample_class(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points from p(x | y=k)."""
        return _gauss(int(n), rng, self.means[k], self.covs[k])

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(x, y): n draws from the joint, y ~ p(y) then x ~ p(x | y)."""
        y = (rng.random(int(n)) < self.priors[1]).astype(np.int64)
        x = np.empty((int(n), 2))
        for k in (0, 1):
            x[y == k] = self.sample_class(k, int((y == k).sum()), rng)
        return x, y

    def proba_missing(self, value, observed: int = 0) -> np.ndarray:
        """p(y=1 | x_observed = value) with the other coordinate unknown: it is integrated out,
        p(y | x1) ∝ p(y) ∫ p(x1, x2 | y) dx2 = p(y) N(x1; μ_y[1], Σ_y[1,1]) (a Gaussian's marginal)."""
        v = np.asarray(value, np.float64)
        lj = []
        for k in (0, 1):
            m, s2 = self.means[k, observed], self.covs[k, observed, observed]
            lj.append(math.log(self.priors[k]) - 0.5 * ((v - m) ** 2 / s2 + math.log(s2) + LOG_2PI))
        return np.exp(lj[1] - np.logaddexp(lj[0], lj[1]))


# --- discriminative -------------------------------------------------------------------------------

class LogisticRegression:
    """p(y=1 | x) = σ(wᵀx + b) (notes 2.2.2), fitted by Newton's method (IRLS) with backtracking.

    The objective is the mean log-loss + (l2/2)|w|² (the bias not penalised): separable classes keep a
    finite optimum. Deterministic (starts at zero; nothing random)."""

    generative = False
    key = "logreg"
    title = "Logistic regression"

    def __init__(self, l2: float = 1e-3, max_iter: int = 50, tol: float = 1e-10):
        self.l2, self.max_iter, self.tol = float(l2), int(max_iter), float(tol)
        self.w: torch.Tensor | None = None
        self.loss_history: list[float] = []

    @staticmethod
    def _design(x) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x, np.float64).reshape(-1, 2))
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    def objective(self, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = X @ w
        nll = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        return nll + 0.5 * self.l2 * (w[:2] ** 2).sum()

    def fit(self, x, y) -> LogisticRegression:
        X, t = self._design(x), torch.as_tensor(np.asarray(y, np.float64))
        w = torch.zeros(3, dtype=torch.float64)
        mask = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
        loss = self.objective(w, X, t)
        self.loss_history = [float(loss)]
        for _ in range(self.max_iter):
            p = torch.sigmoid(X @ w)
            g = X.T @ (p - t) / len(t) + self.l2 * mask * w
            if float(g.norm()) < self.tol:
                break
            H = (X.T * (p * (1 - p))) @ X / len(t) + self.l2 * torch.diag(mask) + 1e-12 * torch.eye(3, dtype=w.dtype)
            step = torch.linalg.solve(H, g)
            a = 1.0
            while a > 1e-8:  # backtracking: every accepted step lowers the objective
                new = self.objective(w - a * step, X, t)
                if float(new) <= float(loss) - 1e-4 * a * float(g @ step):
                    break
                a *= 0.5
            else:
                break
            w, loss = w - a * step, new
            self.loss_history.append(float(loss))
        self.w = w
        return self

    def gradient(self, x, y) -> np.ndarray:
        """The objective's gradient at the fitted weights, by autograd (≈ 0 at the optimum)."""
        w = self.w.clone().requires_grad_(True)
        self.objective(w, self._design(x), torch.as_tensor(np.asarray(y, np.float64))).backward()
        return w.grad.numpy()

    def predict_proba(self, x) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(self._design(x) @ self.w).numpy()


class MLPClassifier:
    """p(y=1 | x) = σ(f(x)) with f a small tanh MLP (notes 2.2.3's neural conditional), full-batch Adam.
    Initialised from its own torch.Generator: the global RNG is never touched."""

    generative = False
    key = "mlp"
    title = "MLP classifier"

    def __init__(self, hidden: int = 24, steps: int = 300, lr: float = 0.03, seed: int = 0):
        self.hidden, self.steps, self.lr, self.seed = int(hidden), int(steps), float(lr), int(seed)
        self.params: list[torch.Tensor] = []
        self.loss_history: list[float] = []
        self.shift = self.scale = None

    def _init(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        sizes = [2, self.hidden, self.hidden, 1]
        self.params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            self.params.append((torch.randn(a, b, generator=g) / math.sqrt(a)).requires_grad_())
            self.params.append(torch.zeros(b, requires_grad=True))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.shift) / self.scale
        for i in range(0, len(self.params) - 2, 2):
            h = torch.tanh(h @ self.params[i] + self.params[i + 1])
        return (h @ self.params[-2] + self.params[-1]).squeeze(-1)

    def fit(self, x, y) -> MLPClassifier:
        X = torch.as_tensor(np.asarray(x, np.float32).reshape(-1, 2))
        t = torch.as_tensor(np.asarray(y, np.float32))
        self.shift, self.scale = X.mean(0), X.std(0).clamp_min(1e-6)
        self._init()
        opt = torch.optim.Adam(self.params, lr=self.lr)
        self.loss_history = []
        for _ in range(self.steps):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self._logits(X), t)
            loss.backward()
            opt.step()
            self.loss_history.append(float(loss.detach()))
        return self

    def predict_proba(self, x) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(x, np.float32).reshape(-1, 2))
            return torch.sigmoid(self._logits(x)).double().numpy()


# --- fitting and scoring them all -------------------------------------------------------------------

MODELS = {"nb": "Gaussian naive Bayes", "qda": "Gaussian QDA (full covariance)",
          "logreg": "Logistic regression", "mlp": "MLP classifier"}


def make_model(key: str, seed: int = 0):
    if key == "nb":
        return GaussianClassifier(full=False)
    if key == "qda":
        return GaussianClassifier(full=True)
    if key == "logreg":
        return LogisticRegression()
    if key == "mlp":
        return MLPClassifier(seed=seed)
    raise ValueError(f"unknown model '{key}' (one of {', '.join(MODELS)})")


def accuracy(p1: np.ndarray, y: np.ndarray) -> float:
    return float(((np.asarray(p1) >= 0.5).astype(np.int64) == np.asarray(y)).mean())


def log_loss(p1: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p(y_true | x) in nats."""
    p = np.clip(np.asarray(p1, np.float64), EPS, 1 - EPS)
    y = np.asarray(y)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


@dataclass
class Fitted:
    """One fitted model and its scores on the held-out split (nll only for a generative model)."""

    key: str
    model: object
    accuracy: float
    log_loss: float
    train_accuracy: float
    nll: float | None = None
    extra: dict = field(default_factory=dict)


def fit_all(data: LabelledData, keys, seed: int = 0) -> dict[str, Fitted]:
    """Fit each model of `keys` on the training split and score it on the held-out one."""
    out = {}
    for key in keys:
        m = make_model(key, seed).fit(data.x_train, data.y_train)
        p = m.predict_proba(data.x_test)
        nll = float(-m.log_prob(data.x_test).mean()) if m.generative else None
        out[key] = Fitted(key, m, accuracy(p, data.y_test), log_loss(p, data.y_test),
                          accuracy(m.predict_proba(data.x_train), data.y_train), nll)
    return out
