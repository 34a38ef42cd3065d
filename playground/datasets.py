"""2D datasets: the standard toy sets, drawn points and uploaded CSV files.

Every built-in set is a pure function ``(n, rng, noise) -> float32 array (n, 2)`` of a
``numpy.random.Generator``: the same seed gives the same points. Sets whose density is known in
closed form carry a ``log_prob`` so the gap between a model's NLL and the data's own entropy can
be shown. Everything here is numpy only.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import densities as D

LOG_2PI = math.log(2 * math.pi)


class DataError(ValueError):
    """Data that cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class Dataset:
    """A built-in 2D dataset.

    Attributes:
        name: key used by the CLI and the UI.
        title: human name.
        fn: (n, rng, noise) -> float32 (n, 2).
        noise: default noise level; noise_range: the slider's safe range.
        box: half-width of the square plotting box [-box, box]^2 that holds the data.
        log_prob: closed-form log-density (numpy, (n, 2) -> (n,)) given noise, when one exists.
        modes: centres of the mixture components (for mode-coverage metrics), with their std.
        noise_help: what the noise level means for this set.
    """

    name: str
    title: str
    fn: Callable[[int, np.random.Generator, float], np.ndarray]
    noise: float
    noise_range: tuple[float, float]
    box: float = 4.0
    log_prob: Callable[[np.ndarray, float], np.ndarray] | None = None
    modes: Callable[[float], np.ndarray] | None = None
    noise_help: str = "standard deviation of the Gaussian noise added to each point"
    description: str = ""

    def sample(self, n: int, rng: np.random.Generator, noise: float | None = None) -> np.ndarray:
        noise = self.noise if noise is None else float(noise)
        lo, hi = self.noise_range
        if not lo <= noise <= hi:
            raise DataError(f"{self.name}: noise {noise} outside [{lo}, {hi}]")
        x = self.fn(int(n), rng, noise)
        return np.ascontiguousarray(x, dtype=np.float32)

    def has_density(self, noise: float | None = None) -> bool:
        if self.log_prob is None:
            return False
        try:
            self.log_prob(np.zeros((1, 2), np.float32), self.noise if noise is None else noise)
        except NotImplementedError:
            return False
        return True


def _mixture(centres: np.ndarray, n: int, rng: np.random.Generator, std: float) -> np.ndarray:
    k = rng.integers(0, len(centres), n)
    return centres[k] + std * rng.standard_normal((n, 2))


# --- the sets ------------------------------------------------------------------------------------

def _eight_centres(noise: float = 0.0) -> np.ndarray:
    return D.eight_centres()


def _grid_centres(noise: float = 0.0) -> np.ndarray:
    return D.grid_centres()


def eight_gaussians(n, rng, noise):
    return _mixture(_eight_centres(), n, rng, noise)


def twentyfive_gaussians(n, rng, noise):
    return _mixture(_grid_centres(), n, rng, noise)


def moons(n, rng, noise):
    """Two interleaved half circles (the sklearn construction), centred and scaled by 2."""
    n1 = n // 2
    t1 = np.pi * rng.random(n1)
    t2 = np.pi * rng.random(n - n1)
    upper = np.stack([np.cos(t1), np.sin(t1)], 1)
    lower = np.stack([1 - np.cos(t2), 0.5 - np.sin(t2)], 1)
    x = (np.concatenate([upper, lower]) - [0.5, 0.25]) * 2.0
    return rng.permutation(x + noise * rng.standard_normal(x.shape))


def _rings(radii, n, rng, noise):
    r = np.asarray(radii)[rng.integers(0, len(radii), n)]
    t = 2 * np.pi * rng.random(n)
    x = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    return x + noise * rng.standard_normal(x.shape)


def circles(n, rng, noise):
    return _rings([1.5, 3.0], n, rng, noise)


def rings(n, rng, noise):
    return _rings([0.75, 1.5, 2.25, 3.0], n, rng, noise)


def swiss_roll(n, rng, noise):
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 4.0
    return x + noise * rng.standard_normal(x.shape)


def pinwheel(n, rng, noise, arms: int = 5, rate: float = 0.25):
    """Arms of stretched Gaussians twisted by an angle that grows with the radius."""
    k = rng.integers(0, arms, n)
    feats = rng.standard_normal((n, 2)) * [0.3, noise] + [1.0, 0.0]
    angle = 2 * np.pi * k / arms + rate * np.exp(feats[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    x = np.stack([c * feats[:, 0] - s * feats[:, 1], s * feats[:, 0] + c * feats[:, 1]], 1)
    return 2.0 * x


def two_spirals(n, rng, noise):
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    x = sign[:, None] * np.stack([-np.cos(t) * t, np.sin(t) * t], 1) / 3.0
    return x + noise * rng.standard_normal(x.shape)


def checkerboard(n, rng, noise):
    """Uniform on the 8 dark cells of a 4x4 board covering [-4, 4]^2 (cells of side 2)."""
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], float)
    c = cells[rng.integers(0, len(cells), n)]
    x = (c + rng.random((n, 2))) * 2.0 - 4.0
    return x + noise * rng.standard_normal(x.shape)


def banana(n, rng, noise):
    """x1 ~ N(0, 1), x2 | x1 ~ N(0.5 x1^2 - 2, noise^2): a density known in closed form."""
    x1 = D.BANANA_S1 * rng.standard_normal(n)
    x2 = D.BANANA_A * x1**2 + D.BANANA_B + noise * rng.standard_normal(n)
    return np.stack([x1, x2], 1)


def gaussian(n, rng, noise):
    """A correlated Gaussian N(0, noise^2 * [[2, 1.2], [1.2, 1]])."""
    return rng.standard_normal((n, 2)) @ np.linalg.cholesky(D.GAUSS_COV).T * noise


def _energy_dataset(name: str, title: str, box: float = 4.0) -> Dataset:
    """An energy target of playground.densities (p ∝ exp(-U/T)) as a dataset: samples come from a fine
    grid (exact up to the grid's resolution), the density is exact up to a grid-computed log Z.
    The noise slider is the temperature T."""
    return Dataset(name, title, lambda n, rng, t: D.sample(name, n, rng, t), 1.0, (0.5, 2.0), box=box,
                   log_prob=D.DENSITIES[name],
                   noise_help="temperature T of p ∝ exp(−U/T): higher is more spread out",
                   description=f"{title}: an analytic energy target (Rezende & Mohamed 2015)"
                   if name.startswith("u") else f"{title}: a thin ring, hard for random-walk samplers")


def _anisomix() -> Dataset:
    """Unequal weights, rotated and elongated components, exact density (densities.aniso_*)."""
    return Dataset("anisomix", "Anisotropic mixture", D.aniso_sample, 0.15,
                   (0.05, 1.0), box=4.5, log_prob=D.aniso_log_prob,
                   noise_help="short-axis spread of the components (their long axes are fixed)",
                   description="5 rotated, elongated Gaussians with weights 0.35 to 0.08: exact density known")


DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("8gaussians", "8 Gaussians", eight_gaussians, 0.25, (0.02, 1.0),
            log_prob=D.DENSITIES["8gaussians"], modes=_eight_centres,
            noise_help="standard deviation of each of the 8 components",
            description="8 equal Gaussians on a circle of radius 2.8: the classic mode-collapse test"),
    Dataset("25gaussians", "25 Gaussians", twentyfive_gaussians, 0.1, (0.02, 0.5),
            log_prob=D.DENSITIES["25gaussians"], modes=_grid_centres,
            noise_help="standard deviation of each of the 25 components",
            description="a 5x5 grid of Gaussians, 1.5 apart"),
    Dataset("moons", "Two moons", moons, 0.1, (0.0, 1.0), box=3.5,
            description="two interleaved half circles"),
    Dataset("circles", "Circles", circles, 0.1, (0.0, 1.0), description="two concentric circles"),
    Dataset("rings", "Rings", rings, 0.06, (0.0, 0.5), description="four concentric rings"),
    Dataset("swissroll", "Swiss roll", swiss_roll, 0.1, (0.0, 1.0),
            description="a spiral sheet seen from above"),
    Dataset("pinwheel", "Pinwheel", pinwheel, 0.1, (0.01, 0.5),
            noise_help="spread of each arm across its length", description="five twisted arms"),
    Dataset("2spirals", "Two spirals", two_spirals, 0.1, (0.0, 1.0),
            description="two interleaved spirals"),
    Dataset("checkerboard", "Checkerboard", checkerboard, 0.0, (0.0, 0.5), box=4.5,
            log_prob=D.checkerboard_log_prob,
            description="uniform on 8 squares; exact density log(1/32) without noise"),
    Dataset("banana", "Banana", banana, 0.35, (0.05, 1.5), log_prob=D.banana_log_prob,
            noise_help="standard deviation of x2 given x1",
            description="x1 ~ N(0, 1), x2|x1 ~ N(0.5·x1² − 2, s²): exact density known"),
    Dataset("gaussian", "Correlated Gaussian", gaussian, 0.8, (0.2, 2.0), box=4.5, log_prob=D.gaussian_log_prob,
            noise_help="scale of the covariance [[2, 1.2], [1.2, 1]]",
            description="one correlated Gaussian: the simplest sanity check"),
    _anisomix(),
    _energy_dataset("u1", "U1: ring with two lobes"),
    _energy_dataset("u2", "U2: sine wave", box=4.5),
    _energy_dataset("u3", "U3: split sine", box=4.5),
    _energy_dataset("u4", "U4: sine and step", box=4.5),
    _energy_dataset("donut", "Donut", box=3.5),
]}


# --- train / held-out split ------------------------------------------------------------------------

@dataclass
class DataSplit:
    """Training and held-out points plus where they came from.

    `box` is (xmin, xmax, ymin, ymax), the square every plot of this data uses.
    `log_prob` is the true log-density when the data has one in closed form."""

    train: np.ndarray
    test: np.ndarray
    name: str
    box: tuple[float, float, float, float]
    log_prob: Callable[[np.ndarray], np.ndarray] | None = None
    modes: np.ndarray | None = None
    mode_std: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.train) + len(self.test)


def split(x: np.ndarray, rng: np.random.Generator, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float32)
    idx = rng.permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    return x[idx[n_test:]], x[idx[:n_test]]


def box_of(x: np.ndarray, margin: float = 0.15) -> tuple[float, float, float, float]:
    """A square box around the points (robust to a few outliers), with a margin."""
    lo = np.quantile(x, 0.002, axis=0)
    hi = np.quantile(x, 0.998, axis=0)
    centre = (lo + hi) / 2
    half = float(max(hi - lo) / 2 * (1 + 2 * margin)) or 1.0
    return (float(centre[0] - half), float(centre[0] + half), float(centre[1] - half), float(centre[1] + half))


class TrueLogDensity:
    """A built-in dataset's true log-density at its noise, as a named callable (a split is sent to the worker
    process that trains on it: a lambda could not be pickled)."""

    def __init__(self, name: str, noise: float):
        self.name, self.noise = name, float(noise)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return DATASETS[self.name].log_prob(x, self.noise)


def make_split(name: str, n: int = 2000, noise: float | None = None, seed: int = 0,
               test_fraction: float = 0.2) -> DataSplit:
    """A built-in dataset, sampled with `seed` and split into train / held-out."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    if not 20 <= n <= 200_000:
        raise DataError(f"number of points {n} outside [20, 200000]")
    ds = DATASETS[name]
    noise = ds.noise if noise is None else float(noise)
    rng = np.random.default_rng(seed)
    train, test = split(ds.sample(n, rng, noise), rng, test_fraction)
    lp = TrueLogDensity(name, noise) if ds.has_density(noise) else None
    modes = ds.modes(noise) if ds.modes else None
    b = ds.box
    return DataSplit(train, test, name, (-b, b, -b, b), log_prob=lp, modes=modes,
                     mode_std=noise if ds.modes else None, info={"noise": noise, "title": ds.title})


def split_array(x: np.ndarray, name: str, seed: int = 0, standardise: bool = False,
                test_fraction: float = 0.2, box: tuple[float, float, float, float] | None = None) -> DataSplit:
    """Your own points (drawn or uploaded) as a DataSplit, optionally standardised (in float64, before
    the points are stored as float32). Raises DataError when float32 training cannot use them (see
    :func:`check_points`)."""
    x = np.asarray(x, np.float64)
    info = {}
    if standardise:
        mean, std = x.mean(0), _std(x)
        std[~(std > 0)] = 1.0  # a constant column stays as it is (only an exact zero: 1e-300 spreads scale up)
        x = (x - mean) / std
        info = {"standardised_mean": mean.tolist(), "standardised_std": std.tolist()}
    x32 = check_points(x)
    rng = np.random.default_rng(seed)
    train, test = split(x32, rng, test_fraction)
    return DataSplit(train, test, name, box if box is not None and not standardise else box_of(x), info=info)


def _std(x: np.ndarray) -> np.ndarray:
    """Each column's standard deviation, computed on the column divided by its largest deviation (squares
    of deviations around 1e-300 underflow even float64)."""
    c = x - x.mean(0)
    a = np.abs(c).max(0)
    safe = np.where(a > 0, a, 1.0)
    return np.where(a > 0, safe * (c / safe).std(0), 0.0)


# Training runs in float32. Coordinates beyond MAX_ABS have squares (variances, squared distances) within a
# few orders of magnitude of float32's overflow (3.4e38); a spread below MIN_SPREAD has squares in float32's
# underflow range (below 1.2e-38). Both are refused with a line that says to rescale or standardise.
MAX_ABS = 1e15
MIN_SPREAD = 1e-15
_RESCALE = "rescale the data or standardise it (the standardise box, or --standardise)"


def check_points(x: np.ndarray, what: str = "the points", spread: bool = True) -> np.ndarray:
    """x (n, 2) as float32 if float32 training can use it, else DataError with one line saying why:
    a coordinate beyond ±MAX_ABS, a spread (root mean variance of the two columns) below MIN_SPREAD, or
    points that are all the same (before or once stored as float32). `spread=False`: the range check only
    (a held-out set may be anything finite)."""
    x = np.asarray(x, np.float64)
    if not np.isfinite(x).all():
        i = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise DataError(f"{what}: point {i + 1} is not finite ({x[i, 0]:.3g}, {x[i, 1]:.3g})")
    if x.size and np.abs(x).max() > MAX_ABS:
        i = int(np.abs(x).max(1).argmax())
        raise DataError(f"{what}: point {i + 1} ({x[i, 0]:.3g}, {x[i, 1]:.3g}) is beyond ±{MAX_ABS:.0e}, too large "
                        f"for float32 training; {_RESCALE}")
    x32 = x.astype(np.float32)
    if not spread:
        return x32
    if len(x) and np.ptp(x[:, 0]) == 0 and np.ptp(x[:, 1]) == 0:
        raise DataError(f"{what} are all identical")
    sd = _std(x)
    m = float(sd.max())
    s = m * float(np.sqrt(((sd / m) ** 2).mean())) if m > 0 else 0.0  # the root mean variance, without underflow
    if s < MIN_SPREAD:
        raise DataError(f"{what} spread over only {s:.2g} (standard deviation), under {MIN_SPREAD:.0e}: float32 "
                        f"arithmetic would underflow; {_RESCALE}")
    if np.ptp(x32[:, 0]) == 0 and np.ptp(x32[:, 1]) == 0:
        raise DataError(f"{what} are all the same once stored as float32 (7 significant digits): they differ by "
                        f"{s:.2g} around ({x[0, 0]:.7g}, {x[0, 1]:.7g}); {_RESCALE}")
    return x32


# --- your own data: CSV ----------------------------------------------------------------------------

MB = 1024 * 1024  # the size limit and the messages count in binary megabytes (20 MB = 20 x 1024 x 1024 bytes)
MAX_CSV_BYTES = 20 * MB
MIN_ROWS, MAX_ROWS = 10, 200_000
FLOAT32_MAX = float(np.finfo(np.float32).max)  # 3.4e38: training stores every point as float32


def _mb(n: int, digits: int = 1) -> str:
    return f"{n / MB:.{digits}f} MB".replace(".0 MB", " MB") if n >= MB // 10 else f"{n:,} bytes"


def parse_csv(data: bytes | str, max_bytes: int = MAX_CSV_BYTES) -> np.ndarray:
    """Two numeric columns from CSV text (a header row is optional; extra columns are refused
    only if the first two are not numeric). Line endings may be \\n, \\r\\n or old-Mac \\r.
    Raises DataError with the reason for a bad file, in one line (a bad cell: its row and column;
    a value that does not fit float32, which training uses: its row and column too)."""
    size = len(data) if isinstance(data, bytes) else len(data.encode())
    if size > max_bytes:
        raise DataError(f"file is {_mb(size, 2)}, over the {_mb(max_bytes)} limit")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError("file is not UTF-8 text (is it a spreadsheet or an image?)") from None
    else:
        text = data
    if "\x00" in text:
        raise DataError("file is binary, not CSV text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old-Mac line endings
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
        delim = dialect.delimiter
    except csv.Error:
        delim = ","
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim, skipinitialspace=True)
                if any(c.strip() for c in r)]
    except csv.Error as err:
        raise DataError(f"not readable as CSV ({str(err)[:80]})") from None
    if not rows:
        raise DataError("file is empty")
    header = None
    if not _is_number(rows[0][0]) or (len(rows[0]) > 1 and not _is_number(rows[0][1])):
        header, rows = rows[0], rows[1:]
    if not rows:
        raise DataError("the file has a header row but no data rows")
    if max((len(r) for r in rows[:100]), default=0) < 2:
        raise DataError("need at least 2 columns (x and y); the rows have only 1")
    if len(rows) < MIN_ROWS:
        raise DataError(f"need at least {MIN_ROWS} rows of data; found {len(rows)}")
    if len(rows) > MAX_ROWS:
        raise DataError(f"too many rows: {len(rows):,} (the limit is {MAX_ROWS:,})")
    out = np.empty((len(rows), 2), np.float64)
    first = 2 if header is not None else 1
    for i, r in enumerate(rows):
        if len(r) < 2:
            raise DataError(f"row {i + first} has only {len(r)} column; need 2")
        for j in (0, 1):
            cell = r[j].strip()
            try:
                v = float(cell)
            except ValueError:
                raise DataError(f"row {i + first}, column {j + 1}: '{cell[:20]}' is not a number") from None
            if not math.isfinite(v):
                raise DataError(f"row {i + first}, column {j + 1}: {cell} (NaN and infinity are not allowed)")
            if abs(v) > FLOAT32_MAX:
                raise DataError(f"row {i + first}, column {j + 1}: {cell[:24]} does not fit float32, which training "
                                f"uses (|x| up to {FLOAT32_MAX:.2g})")
            out[i, j] = v
    if np.ptp(out[:, 0]) == 0 and np.ptp(out[:, 1]) == 0:
        raise DataError("all points are identical")
    return out


def _is_number(s: str) -> bool:
    try:
        float(s.strip())
        return True
    except ValueError:
        return False


def write_csv(path, x: np.ndarray, header: bool = True) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(["x1", "x2"])
        for a, b in np.asarray(x, np.float64):
            w.writerow([f"{a:.6g}", f"{b:.6g}"])


# --- your own data: drawn ----------------------------------------------------------------------------

PAD_BOX = 4.0  # the drawing pad shows [-PAD_BOX, PAD_BOX]^2 in data coordinates (playground/drawpad.py)


def parse_strokes(value, box: float = PAD_BOX) -> list[np.ndarray]:
    """The drawing pad's value (JSON list of strokes of [x1, x2] points) as arrays; raises DataError.

    A stroke dragged past the pad's edge (the pad keeps the pointer while a button is held) is clipped
    onto it; a point more than one pad width outside the pad is not a drawing and is refused."""
    if value is None or value == "" or value == []:
        raise DataError("draw something on the pad first")
    try:
        raw = json.loads(value) if isinstance(value, str) else value
        strokes = [np.asarray(s, np.float64).reshape(-1, 2) for s in raw if len(s)]
    except (ValueError, TypeError):
        raise DataError("the drawing could not be read") from None
    strokes = [s for s in strokes if np.isfinite(s).all()]
    if not strokes:
        raise DataError("draw something on the pad first")
    for s in strokes:
        far = np.abs(s).max(1) > 3 * box
        if far.any():
            a, b = s[far][0]
            raise DataError(f"a drawn point ({a:.3g}, {b:.3g}) lies far outside the pad [-{box:g}, {box:g}]²: "
                            "draw on the pad")
    return [np.clip(s, -box, box) for s in strokes]


def points_from_strokes(strokes, n: int, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    """n points spread along drawn strokes (uniformly by arc length), plus Gaussian noise.

    A stroke with a single point (a click) is a dot: its points scatter around it with the same
    noise. Every stroke gets a share of points proportional to its length (a dot counts as 0.5
    units), so a long curve gets more points than a short tick. Dots alone with no spread would
    give n copies of one point (an infinite density), so they are refused, as the CSV path refuses
    identical points."""
    strokes = parse_strokes(strokes)
    segs_a, segs_b, weights = [], [], []
    for s in strokes:
        if len(s) == 1 or np.allclose(s, s[0]):
            segs_a.append(s[0])
            segs_b.append(s[0])
            weights.append(0.5)
            continue
        a, b = s[:-1], s[1:]
        lens = np.linalg.norm(b - a, axis=1)
        keep = lens > 0
        segs_a += list(a[keep])
        segs_b += list(b[keep])
        weights += list(lens[keep])
    a, b, w = np.asarray(segs_a), np.asarray(segs_b), np.asarray(weights)
    if not noise > 0 and np.ptp(np.concatenate([a, b]), axis=0).max() == 0:
        raise DataError("the drawing is a single dot with no spread: every point would be the same; "
                        "raise the stroke spread or draw a stroke")
    pick = rng.choice(len(w), size=n, p=w / w.sum())
    t = rng.random(n)[:, None]
    pts = a[pick] + t * (b[pick] - a[pick]) + noise * rng.standard_normal((n, 2))
    return pts.astype(np.float32)
