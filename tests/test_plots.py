"""Figures are built from plain numpy Snapshots, without torch, and are valid Plotly."""

import base64
import json
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from playground import plots, views
from playground.snapshot import MixtureProbe, Snapshot

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def fake_snapshot(model_key="mog", family="latent", density="exact", K=3):
    rng = np.random.default_rng(0)
    xs = np.linspace(-4, 4, 50, dtype=np.float32)
    lp = -0.5 * (xs[None, :] ** 2 + xs[:, None] ** 2) - np.log(2 * np.pi)
    covs = np.stack([np.eye(2) * 0.3] * K)
    return Snapshot(step=12, status="running", message="", model_key=model_key, family=family, density=density,
                    box=(-4, 4, -4, 4), train=rng.normal(size=(100, 2)).astype(np.float32),
                    test=rng.normal(size=(40, 2)).astype(np.float32),
                    samples=rng.normal(size=(60, 2)).astype(np.float32),
                    sample_labels=rng.integers(0, K, 60).astype(np.int32), grid_x=xs, grid_y=xs,
                    log_density=lp.astype(np.float32), grid_mass=1.0,
                    curves={"train_nll": (np.arange(5, dtype=np.float32), np.linspace(3, 2, 5, dtype=np.float32)),
                            "test_nll": (np.arange(5, dtype=np.float32), np.linspace(3.1, 2.2, 5, dtype=np.float32)),
                            "energy_distance": (np.arange(5, dtype=np.float32), np.zeros(5, np.float32)),
                            "loss": (np.arange(5, dtype=np.float32), np.ones(5, np.float32))},
                    latest={"loss": 1.0, "test_nll": 2.2},
                    probe=MixtureProbe(weights=np.full(K, 1 / K, np.float32), means=rng.normal(size=(K, 2)),
                                       covariances=covs, point_labels=rng.integers(0, K, 100).astype(np.int32),
                                       point_confidence=np.ones(100, np.float32)),
                    data_nll=2.0)


def test_plot_modules_never_import_torch_or_gradio():
    code = ("import sys; import playground.plots, playground.views; "
            "bad = [m for m in ('torch', 'gradio') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("log_scale", [False, True])
def test_mixture_frame_is_valid_plotly(log_scale):
    figs = views.render(fake_snapshot(), log_scale=log_scale)
    assert {"main", "samples", "curves", "extra"} <= set(figs)
    for name, fig in figs.items():
        decoded = json.loads(plots.to_json(fig))
        go.Figure(decoded)  # raises on an invalid property
        lay = decoded["layout"]
        assert lay.get("uirevision"), name
        assert lay["xaxis"]["title"]["text"] and lay["yaxis"]["title"]["text"], name
    main = figs["main"]
    assert main["data"][0]["type"] == "heatmap"
    assert main["layout"]["yaxis"]["scaleanchor"] == "x"  # square data view
    names = {t.get("name") for t in main["data"]}
    assert any("1σ" in str(n) for n in names) and any("2σ" in str(n) for n in names)


def test_arrays_travel_as_typed_arrays():
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    fig = {"data": [{"type": "heatmap", "z": z, "x": np.array([0.0, 1.0, 2.0])}], "layout": {"a": float("nan")}}
    out = json.loads(plots.to_json(fig))
    enc = out["data"][0]["z"]
    assert enc["dtype"] == "f4" and enc["shape"] == "2,3"
    back = np.frombuffer(base64.b64decode(enc["bdata"]), np.float32).reshape(2, 3)
    np.testing.assert_array_equal(back, z)
    assert out["data"][0]["x"]["dtype"] == "f4"  # float64 sent as float32
    assert out["layout"]["a"] is None  # NaN is not valid JSON


def test_ellipse_is_the_n_sigma_contour():
    mean = np.array([1.0, -2.0])
    cov = np.array([[2.0, 0.8], [0.8, 0.5]])
    for k in (1.0, 2.0):
        xy = plots.ellipse_xy(mean, cov, k).astype(np.float64)
        d = xy - mean
        maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
        np.testing.assert_allclose(np.sqrt(maha), k, rtol=1e-4)


def test_log_density_view_clips_the_tails():
    snap = fake_snapshot()
    snap.log_density[0, 0] = -1e6
    tr = plots.density_heatmap(snap, log_scale=True)
    top = float(snap.log_density.max())
    assert tr["z"].min() >= tr["zmin"] and top <= tr["zmax"] < top + 0.5  # the top, rounded up to 0.5 nats
    assert tr["zmax"] - tr["zmin"] == 12.0


@pytest.mark.parametrize("v", [1e-9, 0.0123, 0.3, 0.99, 1.0, 1.01, 7.3, 123.0, -0.37, -5.1])
def test_colour_ranges_round_to_few_nice_steps(v):
    """A density's peak grows a little every frame; its colour bar's end moves only between nice steps."""
    up, down = plots.nice_ceil(v), plots.nice_floor(v)
    assert down <= v <= up and up / down <= 1.34 if v > 0 else down <= v <= up
    mantissa = abs(up) / 10 ** np.floor(np.log10(abs(up)))
    assert round(mantissa, 6) in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    ends = {plots.nice_ceil(x) for x in np.linspace(0.31, 0.39, 50)}
    assert len(ends) <= 2


def test_models_without_density_say_so():
    snap = fake_snapshot(model_key="nothing", family="none", density="none")
    snap.log_density = None
    figs = views.render(snap)
    assert "no density" in json.dumps(figs["main"]["layout"]["annotations"])


def test_polylines_break_between_lines_and_the_trace_does_not_bridge_them():
    lines = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    xy = plots.polylines(lines)
    assert xy.shape == (15, 2) and xy.dtype == np.float32
    assert np.isnan(xy[[4, 9, 14]]).all() and np.isfinite(np.delete(xy, [4, 9, 14], 0)).all()
    np.testing.assert_array_equal(xy[5:9], lines[1])
    tr = plots.lines_trace(xy, "grid", "#123456", dash="dash")
    assert tr["connectgaps"] is False and tr["line"]["dash"] == "dash" and len(tr["x"]) == 15


def test_an_estimated_nll_says_so_in_the_status_line_and_the_compare_table():
    """A VAE whose quadrature could not verify every point (quad_exact < 1) has an estimated log p(x):
    the status line and the Compare table mark its NLL "≈" with the error; an exact one stays plain."""
    from playground.compare import Entry, table
    from playground.tabkit import status_html
    from playground.tabs.compare import _table_html

    snap = fake_snapshot()
    assert "NLL ≈" not in status_html(snap)
    snap.latest.update(quad_exact=0.0, quad_error=0.37)
    line = status_html(snap)
    assert "≈ <b>2.200</b>" in line and "± 0.37" in line
    exact = Entry("vae", "VAE", "latent", "exact", metrics={"test_nll": 2.5, "quad_exact": 1.0, "quad_error": 1e-4})
    rough = Entry("vae", "VAE", "latent", "exact", metrics={"test_nll": 2.5, "quad_exact": 0.0, "quad_error": 0.37})
    rows = table([exact, rough])
    assert rows[0]["nll_estimate"] is None and rows[1]["nll_estimate"] == 0.37
    html = _table_html(rows, None)
    assert html.count("≈ 2.500 (estimate ± 0.37)") == 1


def test_long_titles_wrap_at_a_separator_and_make_room():
    """A title longer than a half-page panel breaks at its last dash or dot that fits (a colon only when
    neither does, never inside parentheses), and the layout grows by a line instead of cutting it off."""
    from playground.plots import LEGEND_ROOM_PX, TITLE_CHARS, TITLE_LINE_PX, data_layout, wrap_title

    long = "Energy −f<sub>θ</sub>(x) and MCMC chains — step 1,290 · chains↔exact: energy distance 0.031"
    text, extra = wrap_title(long)
    assert extra == 1 and text == ("Energy −f<sub>θ</sub>(x) and MCMC chains — step 1,290<br>"
                                   "chains↔exact: energy distance 0.031")
    assert wrap_title("Data in latent space, z = f⁻¹(x): mean |z|² = 1.87 (N(0, I): 2)")[0] == \
        "Data in latent space, z = f⁻¹(x):<br>mean |z|² = 1.87 (N(0, I): 2)"
    assert wrap_title("Short — step 3") == ("Short — step 3", 0)
    for t in (long, "x" * 90, "a — " * 40):
        for line in wrap_title(t)[0].split("<br>")[:-1]:
            assert len(line.replace("<sub>", "").replace("</sub>", "")) <= TITLE_CHARS
    short, wrapped = data_layout((-1, 1, -1, 1), "Short — step 3"), data_layout((-1, 1, -1, 1), long)
    grow = TITLE_LINE_PX + LEGEND_ROOM_PX  # the second line, and room for the legend under it
    assert wrapped["margin"]["t"] == short["margin"]["t"] + grow and wrapped["height"] == short["height"] + grow
