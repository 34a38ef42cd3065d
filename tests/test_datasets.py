import json

import numpy as np
import pytest

from playground.datasets import (
    DATASETS,
    MAX_CSV_BYTES,
    MAX_ROWS,
    DataError,
    make_split,
    parse_csv,
    points_from_strokes,
    split_array,
)


@pytest.mark.parametrize("name", list(DATASETS))
def test_shape_dtype_determinism(name):
    ds = DATASETS[name]
    a = ds.sample(500, np.random.default_rng(3))
    b = ds.sample(500, np.random.default_rng(3))
    c = ds.sample(500, np.random.default_rng(4))
    assert a.shape == (500, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # nearly all points inside the dataset's plotting box
    assert (np.abs(a) <= ds.box).all(1).mean() > 0.97


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if d.has_density()])
def test_closed_form_density_integrates_to_one(name):
    ds = DATASETS[name]
    g = np.linspace(-2 * ds.box, 2 * ds.box, 801)
    xx = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    mass = np.exp(ds.log_prob(xx, ds.noise)).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 0.01


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if d.has_density()])
def test_closed_form_density_matches_samples(name):
    """The density is the one the sampler draws from: on samples, the average log-density beats a
    copy of the density shifted by half a unit (a wrong density would not)."""
    ds = DATASETS[name]
    x = ds.sample(4000, np.random.default_rng(0))
    lp = ds.log_prob(x, ds.noise)
    assert np.isfinite(lp).all()
    shifted = ds.log_prob(x + 0.5, ds.noise)
    assert lp.mean() > np.where(np.isfinite(shifted), shifted, -50).mean() + 0.1


def test_noise_changes_spread_and_is_range_checked():
    ds = DATASETS["8gaussians"]
    tight = ds.sample(2000, np.random.default_rng(0), 0.05)
    wide = ds.sample(2000, np.random.default_rng(0), 0.5)
    r_t = np.abs(np.linalg.norm(tight, axis=1) - 2.8).mean()
    r_w = np.abs(np.linalg.norm(wide, axis=1) - 2.8).mean()
    assert r_w > 3 * r_t
    with pytest.raises(DataError):
        ds.sample(10, np.random.default_rng(0), 50.0)


def test_split_is_disjoint_and_seeded():
    a = make_split("moons", 1000, seed=1)
    b = make_split("moons", 1000, seed=1)
    assert len(a.train) == 800 and len(a.test) == 200
    np.testing.assert_array_equal(a.train, b.train)
    both = np.concatenate([a.train, a.test])
    assert len(np.unique(both, axis=0)) == 1000
    with pytest.raises(DataError):
        make_split("nope")
    with pytest.raises(DataError):
        make_split("moons", n=5)


def test_standardise():
    x = np.random.default_rng(0).normal(5, 3, (500, 2))
    s = split_array(x, "mine", standardise=True)
    allx = np.concatenate([s.train, s.test])
    assert np.allclose(allx.mean(0), 0, atol=1e-4) and np.allclose(allx.std(0), 1, atol=1e-3)
    assert s.box[0] < allx[:, 0].min() < allx[:, 0].max() < s.box[1]


# --- CSV ---------------------------------------------------------------------------------------

def _csv(rows, header="x,y"):
    lines = ([header] if header else []) + [f"{a},{b}" for a, b in rows]
    return "\n".join(lines).encode()


def test_csv_with_and_without_header():
    rows = [(i, 2 * i + 0.5) for i in range(20)]
    a = parse_csv(_csv(rows))
    b = parse_csv(_csv(rows, header=None))
    assert a.shape == (20, 2)
    np.testing.assert_array_equal(a, b)
    assert a[3, 1] == 6.5


def test_csv_other_delimiters_and_extra_columns():
    text = "\n".join(f"{i};{i * 0.5};label" for i in range(15)).encode()
    x = parse_csv(text)
    assert x.shape == (15, 2) and x[4, 1] == 2.0
    tabs = "\n".join(f"{i}\t{-i}" for i in range(12)).encode()
    assert parse_csv(tabs)[11, 1] == -11


@pytest.mark.parametrize("blob, reason", [
    (b"", "empty"),
    (_csv([(1, 2)] * 5), "at least 10 rows"),
    ("\n".join(str(i) for i in range(20)).encode(), "at least 2 columns"),
    (_csv([(1, 2)] * 12 + [("a", 3)]), "not a number"),
    (_csv([(1, 2)] * 12 + [("nan", 3)]), "NaN"),
    (_csv([(1, 2)] * 12 + [(1, "inf")]), "NaN and infinity"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not UTF-8"),
    (b"a,b\n" + b"1,2\n0,\x00\n" * 10, "binary"),
    (_csv([(1, 1)] * 12), "identical"),
])
def test_csv_refused_with_reason(blob, reason):
    with pytest.raises(DataError, match=reason):
        parse_csv(blob)


def test_csv_row_and_size_caps():
    many = ("\n".join(f"{i % 7},{i % 5}" for i in range(MAX_ROWS + 1))).encode()
    with pytest.raises(DataError, match="too many rows"):
        parse_csv(many)
    with pytest.raises(DataError, match="limit"):
        parse_csv(_csv([(1, 2)] * 100), max_bytes=50)


# --- drawing ------------------------------------------------------------------------------------

def test_points_follow_the_strokes():
    line = [[-3.0, 0.0], [0.0, 0.0], [3.0, 0.0]]
    dot = [[2.0, 2.0]]
    pts = points_from_strokes(json.dumps([line, dot]), 2000, np.random.default_rng(0), noise=0.0)
    assert pts.shape == (2000, 2) and pts.dtype == np.float32
    on_dot = np.all(pts == [2.0, 2.0], axis=1)
    on_line = np.abs(pts[:, 1]) < 1e-6
    assert (on_dot | on_line).all()
    # points are shared by length: the 6-unit line gets ~12x the 0.5 of the dot
    assert 0.05 < on_dot.mean() < 0.12
    # uniform along the line by arc length
    hist, _ = np.histogram(pts[on_line, 0], bins=6, range=(-3, 3))
    assert hist.min() > 0.7 * hist.mean()


def test_stroke_noise_spreads_points():
    pts = points_from_strokes([[[0.0, 0.0], [1.0, 0.0]]], 3000, np.random.default_rng(0), noise=0.2)
    assert abs(pts[:, 1].std() - 0.2) < 0.02


@pytest.mark.parametrize("value", ["", None, "[]", "[[]]", "not json", "[[[\"a\", 1]]]"])
def test_empty_or_garbled_drawing_is_refused(value):
    with pytest.raises(DataError):
        points_from_strokes(value, 100, np.random.default_rng(0))


# --- issue 10: bad input refused in one clear line ---------------------------------------------------------

@pytest.mark.parametrize("rows, reason", [
    ([(1e308 * (1 - 0.01 * i), 1e308) for i in range(20)], "row 2, column 1: 1e+308 does not fit float32"),
    ([(float(i), float(i % 3)) for i in range(19)] + [(1e308, 1.0)], "row 21, column 1: 1e+308 does not fit"),
    ([(1e39 * (1 + 0.1 * i), 2e39) for i in range(20)], "row 2, column 1: 1e+39 does not fit float32"),
    ([(-3.5e38, 1.0)] + [(float(i), 2.0 * i) for i in range(12)], "row 2, column 1: -3.5e+38 does not fit"),
])
def test_csv_values_beyond_float32_are_refused_with_row_and_column(rows, reason):
    with pytest.raises(DataError, match=reason.replace("+", r"\+")):
        parse_csv(_csv([(repr(a), repr(b)) for a, b in rows]))


def test_csv_largest_float32_values_are_read():
    x = parse_csv(_csv([(3.0e38, -3.0e38)] + [(float(i), 1e30 * i) for i in range(12)]))
    assert x[0, 0] == 3.0e38


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_csv_any_line_ending_is_read(newline):
    """Old-Mac CR-only files raised csv.Error ('new-line character seen in unquoted field') as a traceback."""
    rows = [(i, 0.5 * i - 1) for i in range(15)]
    x = parse_csv(("x,y" + newline + newline.join(f"{a},{b}" for a, b in rows) + newline).encode())
    np.testing.assert_array_equal(x, np.array(rows, float))


def test_csv_header_only_and_size_messages():
    with pytest.raises(DataError, match="^the file has a header row but no data rows$"):
        parse_csv(b"x,y\n")
    with pytest.raises(DataError, match="^need at least 2 columns"):
        parse_csv(b"x\n" + b"1\n" * 12)
    # the limit is 20 binary megabytes and the message says 20 MB, as the README does (it said 21 MB)
    big = b"1,2\n" * (MAX_CSV_BYTES // 4 + 1)
    with pytest.raises(DataError, match=r"^file is 20\.00 MB, over the 20 MB limit$"):
        parse_csv(big)


@pytest.mark.parametrize("x, reason", [
    (np.linspace(0, 1, 40)[:, None] * [1e-300, 2e-300], "spread over only"),  # was 'math domain error'
    (np.linspace(0, 1, 40)[:, None] * [1e-20, 1e-20], "spread over only"),
    (np.stack([1e20 + np.arange(40.0), np.arange(40.0)], 1), "point 1 (1e+20, 0) is beyond"),
    (np.stack([1e10 + 1e-6 * np.arange(40.0), np.full(40, 3.0)], 1), "all the same once stored as float32"),
    (np.full((40, 2), 7.0), "all identical"),
])
def test_points_float32_training_cannot_use_are_refused(x, reason):
    """Your own points go to float32 training: refused in one line, with a hint to rescale or standardise."""
    with pytest.raises(DataError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        split_array(x, "mine")


def test_standardising_rescues_tiny_and_huge_spreads():
    for scale in (1e-300, 1e20):
        x = np.random.default_rng(0).normal(0, 1, (50, 2)) * scale + 3 * scale
        s = split_array(x, "mine", standardise=True)
        allx = np.concatenate([s.train, s.test])
        assert np.allclose(allx.std(0), 1, atol=1e-3), scale


def test_a_single_click_with_no_spread_is_refused():
    """It was accepted: 1,600 copies of one point ('∫p on grid ≈ 3.122', NLL -15.8 for RealNVP)."""
    with pytest.raises(DataError, match="single dot with no spread"):
        points_from_strokes([[[1.0, 2.0]]], 200, np.random.default_rng(0), noise=0.0)
    with pytest.raises(DataError, match="single dot"):  # the same dot clicked twice
        points_from_strokes([[[1.0, 2.0]], [[1.0, 2.0]]], 200, np.random.default_rng(0), noise=0.0)
    pts = points_from_strokes([[[1.0, 2.0]]], 200, np.random.default_rng(0), noise=0.05)  # a spread: fine
    assert split_array(pts, "drawing").n == 200


def test_strokes_far_off_the_pad_are_refused_and_drag_outs_clipped():
    """Strokes at 1e308 gave numpy's 'Probabilities contain NaN'."""
    with pytest.raises(DataError, match="far outside the pad"):
        points_from_strokes([[[1e308, 0.0], [0.0, 0.0]]], 100, np.random.default_rng(0))
    pts = points_from_strokes([[[0.0, 0.0], [6.0, 0.0]]], 500, np.random.default_rng(0), noise=0.0)
    assert 3.9 < pts[:, 0].max() <= 4.0 and (pts[:, 1] == 0).all()  # dragged past the edge: clipped onto it
