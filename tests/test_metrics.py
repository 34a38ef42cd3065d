import math

import numpy as np
import pytest
import torch

from playground import metrics


def test_sample_distances_separate_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 2)), rng.normal(size=(800, 2))
    shifted = rng.normal(size=(800, 2)) + [1.0, 0.0]
    for dist in (metrics.mmd2, metrics.energy_distance):
        same, diff = dist(a, b), dist(a, shifted)
        assert abs(same) < 0.02, (dist.__name__, same)
        assert diff > 10 * max(abs(same), 1e-3), (dist.__name__, diff)
    # energy distance of N(0,1) vs N(1,1) in 2D has a known value: 2E|X-Y| - E|X-X'| - E|Y-Y'|
    big_a = rng.normal(size=(4000, 2))
    big_b = rng.normal(size=(4000, 2)) + [1.0, 0.0]
    ed = metrics.energy_distance(big_a, big_b, max_n=4000)
    mc_xy = np.linalg.norm(rng.normal(size=(200000, 2)) * math.sqrt(2) + [1.0, 0.0], axis=1).mean()
    mc_xx = np.linalg.norm(rng.normal(size=(200000, 2)) * math.sqrt(2), axis=1).mean()
    assert abs(ed - (2 * mc_xy - 2 * mc_xx)) < 0.03


def test_non_finite_samples_are_infinitely_far():
    a = np.zeros((10, 2))
    b = a.copy()
    b[0, 0] = np.nan
    assert metrics.mmd2(a, b) == float("inf")
    assert metrics.energy_distance(a, b) == float("inf")


def test_grid_normaliser_recovers_a_gaussian_partition_function():
    sigma = 0.7
    xs, ys, pts = metrics.make_grid((-6, 6, -6, 6), 300)
    f = -0.5 * (pts ** 2).sum(1) / sigma**2  # unnormalised log-density
    log_z = metrics.grid_log_normalizer(torch.as_tensor(f), metrics.cell_area(xs, ys))
    assert abs(log_z - math.log(2 * math.pi * sigma**2)) < 1e-3


def test_grid_is_row_major_for_heatmaps():
    xs, ys, pts = metrics.make_grid((0, 1, 10, 20), 5)
    grid = pts.reshape(5, 5, 2)
    assert np.allclose(grid[2, :, 0], xs) and np.allclose(grid[:, 3, 1], ys)


def test_mode_coverage():
    modes = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    rng = np.random.default_rng(0)
    on_two = np.concatenate([modes[0] + 0.1 * rng.normal(size=(300, 2)),
                             modes[1] + 0.1 * rng.normal(size=(300, 2)),
                             rng.uniform(10, 20, size=(100, 2))])
    r = metrics.mode_coverage(on_two, modes, std=0.1)
    assert r["modes_covered"] == 2 and r["modes_total"] == 3
    assert abs(r["high_quality"] - 600 / 700) < 0.01


def test_sample_distances_do_not_depend_on_where_the_data_sits():
    """Both distances are translation invariant; computed in float32 around (1000, 1000) with a spread of
    0.02 (GPS-like data), cdist's |a|² + |b|² − 2ab lost every digit. Scaled by 1/0.02² (energy distance
    scales like a length) they match the same samples at the origin."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) * 0.02
    y = rng.normal(size=(400, 2)) * 0.02 + np.array([0.01, 0.0])
    for shift in (0.0, 1000.0):
        assert metrics.energy_distance(x + shift, y + shift) == \
            pytest.approx(metrics.energy_distance(x, y), rel=1e-4, abs=1e-9)
    far = metrics.energy_distance((x + 1000).astype(np.float32), (y + 1000).astype(np.float32))
    assert far == pytest.approx(metrics.energy_distance(x, y), rel=0.05)
    assert metrics.energy_distance(x, y) > 0.002  # the shift of half a spread is seen
    near = metrics.mmd2(x / 0.02, y / 0.02)
    assert metrics.mmd2(x / 0.02 + 1000, y / 0.02 + 1000) == pytest.approx(near, rel=1e-4, abs=1e-9)
