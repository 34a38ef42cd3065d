"""Frame messages (playground/frames.py): a panel's figure travels once, then only what changed, and the
browser's copy after applying the updates is exactly the newest figure. Numpy only, no browser."""

import json

import numpy as np
import pytest

from models import TrainSettings
from playground import frames, plots, views
from playground.datasets import make_split
from playground.frames import FrameEncoder, PanelDiff, apply_message, decode, split
from playground.session import Session


def _same(a, b, path="") -> None:
    """Deep equality of decoded figures (numpy arrays compared by value, NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b or (a != a and b != b), (path, a, b)


def _as_browser_sees(fig: dict) -> dict:
    pfig, layers = split(fig)
    return decode(json.loads(plots.to_json({"data": pfig["data"], "layout": pfig["layout"], "canvas": layers})))


CASES = [("mog", "8gaussians", {"lr": 0.01, "batch": 4096}), ("vae", "moons", {"lr": 3e-3, "batch": 256}),
         ("realnvp", "moons", {"lr": 3e-3, "batch": 512}), ("iaf_student", "moons", {}),
         ("gan_ns", "8gaussians", {"batch": 256}), ("ebm_cd", "8gaussians", {}), ("ebm_nce", "moons", {}),
         ("made", "moons", {"lr": 3e-3, "batch": 256}), ("rnade", "moons", {"lr": 3e-3, "batch": 256})]


@pytest.mark.parametrize("key,dataset,settings", CASES, ids=[c[0] for c in CASES])
def test_updates_bring_the_browser_to_the_newest_figure(key, dataset, settings):
    """Encode a run's frames as the app does, apply them as the page does (frames.apply_message mirrors
    live.js): after every message each panel equals the newest figure, and later messages are smaller."""
    sess = Session(key, None, make_split(dataset, 600, seed=0), TrainSettings.make(**settings), device="cpu",
                   grid_res=40, n_samples=300)
    enc = FrameEncoder()
    held: dict[str, dict] = {}
    sizes = []
    for i in range(4):
        sess.train_steps(15)
        figs = views.render(sess.snapshot(), log_scale=i == 2)  # an option change mid-run, too
        msg = decode(json.loads(enc.encode(figs, status="s", have=enc.seq)))
        sizes.append(sum(len(json.dumps(m, default=str)) for m in msg["panels"].values()))
        for name, pmsg in msg["panels"].items():
            held[name] = apply_message(held.get(name), pmsg)
        for name, fig in figs.items():
            _same(held[name], _as_browser_sees(fig), f"{key}:{name}:frame{i}")
    assert sizes[1] < sizes[0] and sizes[3] < sizes[0], sizes


def _live_figure(step: int, samples: np.ndarray) -> dict:
    xs = np.linspace(-2, 2, 30, dtype=np.float32)
    z = np.exp(-(xs[None] ** 2 + xs[:, None] ** 2) / (1 + step)).astype(np.float32)
    train = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    return {"data": [plots.heatmap(xs, xs, z, "density"), plots.points(train, "training data"),
                     plots.points(samples, "samples", color="#e4572e"),
                     {"type": "contour", "x": xs, "y": xs, "z": np.hypot(xs[None], xs[:, None]),
                      "contours": {"coloring": "none"}}],
            "layout": plots.data_layout((-2, 2, -2, 2), f"step {step}")}


def test_live_panels_draw_heatmaps_and_points_on_the_canvas():
    rng = np.random.default_rng(1)
    fig = _live_figure(0, rng.normal(size=(50, 2)))
    pfig, layers = split(fig)
    assert [lay["type"] for lay in layers] == ["heatmap", "scatter", "scatter"]
    assert [t["type"] for t in pfig["data"]] == ["scatter", "scatter", "scatter", "contour"]  # 3 stubs, 1 svg
    assert all(pfig["data"][lay["stub"]]["x"] == [None] for lay in layers)  # stubs hold no points
    assert pfig["data"][0]["marker"]["showscale"]  # the heatmap's colour bar stays in Plotly
    heat = layers[0]
    assert heat["zq"].dtype == np.uint16 and heat["zq"].shape == (30, 30)
    z = fig["data"][0]["z"]
    back = heat["zlo"] + (heat["zq"].astype(np.float64) - 1) / 65534 * (heat["zhi"] - heat["zlo"])
    assert np.allclose(back, z, atol=(z.max() - z.min()) / 60000)
    assert pfig["layout"]["plot_bgcolor"] == frames.TRANSPARENT  # the canvas paints the plot area


def test_an_update_does_not_resend_static_layers():
    """Only the density, the samples and the title travel after the first frame: not the training data,
    the contour, the axes or the legend."""
    rng = np.random.default_rng(2)
    diff = PanelDiff()
    first = diff.update(_live_figure(0, rng.normal(size=(50, 2))))
    assert "full" in first
    second = diff.update(_live_figure(1, rng.normal(size=(50, 2))))
    assert set(second) <= {"canvas", "relayout", "restyle"}
    assert set(second["canvas"]) == {"0", "2"}  # density and samples; layer 1 (training data) unchanged
    assert set(second["canvas"]["0"]) <= {"zq", "zlo", "zhi", "zmin", "zmax"}
    assert set(second["relayout"]) == {"title.text"}
    assert set(second.get("restyle", {})) <= {"0"}  # at most the density's colour bar; never the contour
    assert len(plots.to_json(second)) < len(plots.to_json(first)) / 2


def test_a_growing_curve_sends_its_tail():
    diff = PanelDiff()
    x = np.arange(100, dtype=np.float32)

    def fig(n):
        return {"data": [{"type": "scatter", "mode": "lines", "x": x[:n], "y": np.sin(x[:n])}],
                "layout": plots.curves_layout("loss", "loss")}

    diff.update(fig(60))
    msg = diff.update(fig(70))
    change = msg["restyle"]["0"]
    assert change["x"]["tail"] == 60 and len(change["x"]["v"]) == 10
    held = apply_message(None, {"full": {"data": [dict(fig(60)["data"][0])], "layout": {}}})
    held = apply_message(held, msg)
    assert np.array_equal(held["data"][0]["y"], np.sin(x[:70]))


def test_structure_change_sends_a_full_figure_and_a_lost_message_resends_everything():
    enc = FrameEncoder()
    rng = np.random.default_rng(3)
    a = json.loads(enc.encode({"main": _live_figure(0, rng.normal(size=(9, 2)))}, have=0))
    b = json.loads(enc.encode({"main": _live_figure(1, rng.normal(size=(9, 2)))}, have=a["seq"]))
    assert "full" in a["panels"]["main"] and "full" not in b["panels"]["main"]
    fewer = _live_figure(2, rng.normal(size=(9, 2)))
    fewer["data"].pop()  # one trace less: a new structure
    c = json.loads(enc.encode({"main": fewer}, have=b["seq"]))
    assert "full" in c["panels"]["main"]
    d = json.loads(enc.encode({"main": fewer}, have=b["seq"]))  # the page missed c
    assert "full" in d["panels"]["main"]


def test_a_binned_heatmap_given_by_its_edges_lands_on_its_cells():
    """Plotly takes cell edges or centres; the canvas stretches the image between the first and last centre."""
    edges = np.linspace(-2.0, 2.0, 9)  # 8 bins of width 0.5
    fig = {"data": [plots.heatmap(edges, edges, np.ones((8, 8)), "table")],
           "layout": plots.data_layout((-2, 2, -2, 2), "t")}
    _, (heat,) = split(fig)
    assert (heat["x0"], heat["x1"], heat["y0"], heat["y1"]) == (-1.75, 1.75, -1.75, 1.75)
