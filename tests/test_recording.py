"""Recording a run's frames (playground.recording): the bounded record, the offline HTML animation, the
Pillow GIF and the curves CSV. No browser here (tests/test_recording_browser.py plays the HTML)."""

from __future__ import annotations

import csv
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from playground import plots, recording

BOX = (-4.0, 4.0, -4.0, 4.0)


def scatter_figure(step: int, xy=((0.0, 0.0),), color: str = "red", size: float = 14) -> dict:
    return {"data": [plots.points(np.asarray(xy, np.float32), "samples", color=color, size=size, opacity=1.0)],
            "layout": plots.data_layout(BOX, f"Samples — step {step}")}


def heatmap_figure(step: int, n: int = 40) -> dict:
    xs = np.linspace(BOX[0], BOX[1], n)
    z = np.tile(xs, (n, 1))  # z grows left to right
    return {"data": [plots.heatmap(xs, xs, z, "density", zmin=BOX[0], zmax=BOX[1])],
            "layout": plots.data_layout(BOX, f"Density — step {step}")}


def test_recorder_keeps_a_bounded_evenly_spaced_record():
    rec = recording.Recorder(max_frames=60)
    most = 0
    for step in range(1000):
        rec.add(step, scatter_figure(step))
        most = max(most, len(rec))
        assert rec.frames[-1][0] == step  # the latest frame is always there
    steps = [s for s, _ in rec.frames]
    assert most <= 60 and len(steps) == len(rec) <= 60
    assert len(steps) >= 30  # halving leaves at least half: still a useful record
    assert steps[0] == 0 and steps[-1] == 999
    gaps = np.diff(steps[:-1])  # all but the extra latest frame sit on one interval
    assert len(set(gaps.tolist())) == 1, gaps
    assert 0 < steps[-1] - steps[-2] <= gaps[0]
    assert gaps[0] == rec.interval and rec.interval > 1
    one = len(plots.to_json(scatter_figure(999)))
    assert rec.nbytes() <= 60 * (one + 8)  # memory bounded by max_frames figures


def test_recorder_below_capacity_keeps_everything_and_clear_empties():
    rec = recording.Recorder(max_frames=10)
    for step in (5, 10, 20):
        rec.add(step, scatter_figure(step))
    assert [s for s, _ in rec.frames] == [5, 10, 20] and len(rec) == 3
    rec.clear()
    assert len(rec) == 0 and rec.frames == []


def test_recorder_stores_a_copy_not_the_callers_figure():
    rec = recording.Recorder()
    fig = scatter_figure(0, xy=[(1.0, 2.0)])
    rec.add(0, fig)
    fig["data"][0]["x"][0] = 99.0  # the caller reuses its arrays
    fig["layout"]["title"]["text"] = "changed"
    (_, stored), = rec.frames
    assert isinstance(rec._kept[0][1], str)  # compact JSON, not the dict
    assert recording._array(stored["data"][0]["x"]).tolist() == [1.0]
    assert stored["layout"]["title"]["text"] == "Samples — step 0"


def _figure_json(page: str) -> dict:
    m = re.search(r'<script id="figure" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no figure JSON in the page"
    return json.loads(m.group(1))


def test_html_is_one_offline_animation():
    rec = recording.Recorder(max_frames=8)
    for step in range(0, 200, 10):
        rec.add(step, heatmap_figure(step) if step % 20 else scatter_figure(step))
    frames = rec.frames
    page = recording.to_html(frames, "A <run>")
    header = recording.plotly_js()[:200]
    version = re.search(r"plotly\.js v[\d.]+", header).group(0)
    assert version in page  # plotly.js itself is inlined
    assert "<title>A &lt;run&gt;</title>" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)  # no external scripts at all
    own = page.replace(recording.plotly_js(), "")  # (plotly.js's own strings hold links it never loads)
    assert len(own) < len(page) - 1_000_000
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", own)
    spec = _figure_json(page)
    names = [f["name"] for f in spec["frames"]]
    assert names == [str(s) for s, _ in frames] and len(names) == len(rec) <= 8
    assert spec["frames"][-1]["layout"]["title"]["text"].endswith(f"step {frames[-1][0]}")
    assert spec["data"] == spec["frames"][0]["data"]
    slider, = spec["layout"]["sliders"]
    assert len(slider["steps"]) == len(frames)
    assert [st["args"][0] for st in slider["steps"]] == [[n] for n in names]
    assert "step" in slider["currentvalue"]["prefix"]
    play = spec["layout"]["updatemenus"][0]["buttons"][0]
    assert play["method"] == "animate" and play["args"][1]["frame"]["redraw"] is True
    assert play["args"][1]["transition"]["duration"] == 0
    assert 100 <= play["args"][1]["frame"]["duration"] <= 250


def test_gif_frames_size_loop_and_colours(tmp_path):
    frames = [(0, scatter_figure(0)), (1, heatmap_figure(1)), (2, scatter_figure(2, xy=[(3.0, 3.0)], color="blue"))]
    path = tmp_path / "run.gif"
    n = recording.to_gif(frames, path, size=(400, 360), fps=5)
    assert n == 3
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (400, 360)
        assert im.info.get("loop") == 0
        assert im.info.get("duration") == 200
        rgb = [np.asarray(f.convert("RGB")).astype(int) for f in _frames(im)]

    # frame 0: a red marker at (0, 0), which the square box puts at the middle of the plot area
    red = (rgb[0][..., 0] > 200) & (rgb[0][..., 1] < 60) & (rgb[0][..., 2] < 60)
    ys, xs = np.nonzero(red)
    assert len(xs) > 20
    (x0, y0, x1, y1), (cx, cy) = _plot_area(rgb[1])
    assert abs(xs.mean() - cx) < 15 and abs(ys.mean() - cy) < 15
    # frame 2: the marker moved to the top right and turned blue
    assert not ((rgb[2][..., 0] > 200) & (rgb[2][..., 1] < 60) & (rgb[2][..., 2] < 60)).any()
    blue = (rgb[2][..., 2] > 200) & (rgb[2][..., 0] < 60)
    assert np.nonzero(blue)[1].mean() > cx + 50 and np.nonzero(blue)[0].mean() < cy - 50
    # frame 1: the heatmap is dark (Viridis low) on the left, yellow (high) on the right
    lo, hi = rgb[1][int(cy), int(x0 + 0.1 * (x1 - x0))], rgb[1][int(cy), int(x0 + 0.9 * (x1 - x0))]
    assert lo[2] > lo[1] and hi[0] > 150 and hi[1] > 150 and hi[2] < 120, (lo, hi)


def _frames(im):
    for i in range(im.n_frames):
        im.seek(i)
        yield im.copy()


def _plot_area(rgb: np.ndarray):
    """(x0, y0, x1, y1) and the middle of the heatmap frame's coloured plot area (pixels far from grey)."""
    spread = rgb.max(-1) - rgb.min(-1)
    ys, xs = np.nonzero(spread > 40)
    return (xs.min(), ys.min(), xs.max(), ys.max()), ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)


def test_gif_to_a_buffer_respects_a_colorscale_and_merges_repeats():
    fig = heatmap_figure(0)
    fig["data"][0]["colorscale"] = [[0.0, "#000000"], [1.0, "#ff0000"]]
    buf = io.BytesIO()
    assert recording.to_gif([(0, fig), (1, fig)], buf, size=(300, 300)) == 1  # identical renders: one frame
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    colored = rgb[(rgb.max(-1) - rgb.min(-1)) > 40]
    assert len(colored) > 1000
    assert colored[:, 1].max() < 40 and colored[:, 2].max() < 40  # black to red, never green or blue


def test_gif_heatmap_rows_go_up():
    fig = heatmap_figure(0)
    z = recording._array(fig["data"][0]["z"])
    fig["data"][0]["z"] = z.T.copy()  # now z grows with y: row 0 (lowest y) is the low end
    buf = io.BytesIO()
    recording.to_gif([(0, fig)], buf, size=(300, 300))
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    (x0, y0, x1, y1), (cx, _) = _plot_area(rgb)
    top, bottom = rgb[int(y0 + 0.1 * (y1 - y0)), int(cx)], rgb[int(y0 + 0.9 * (y1 - y0)), int(cx)]
    assert top[0] > 150 and top[1] > 150 and bottom[2] > bottom[1], (top, bottom)  # yellow above, purple below


def test_gif_lines_break_at_nan():
    xy = np.array([[-3, -3], [-1, -3], [np.nan, np.nan], [1, 3], [3, 3]], np.float32)
    fig = {"data": [plots.lines_trace(xy, "grid", "#0000ff", width=3)],
           "layout": plots.data_layout(BOX, "lines")}
    buf = io.BytesIO()
    recording.to_gif([(0, fig)], buf, size=(400, 400))
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    blue = (rgb[..., 2] > 180) & (rgb[..., 0] < 80) & (rgb[..., 1] < 80)
    ys, xs = np.nonzero(blue)
    assert len(xs) > 50
    mid = (ys.min() + ys.max()) / 2
    # both segments are drawn, and nothing joins them across the middle of the plot
    assert (ys > mid).any() and (ys < mid).any()
    assert not blue[int(mid) - 20:int(mid) + 20].any()


def test_curves_csv_is_the_union_of_steps():
    snap = SimpleNamespace(curves={
        "loss": (np.array([0, 10, 20]), np.array([1.5, 1.25, 1.0], np.float32)),
        "test_nll": (np.array([10, 30]), np.array([2.5, 2.0])),
    })
    text = recording.curves_csv(snap)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["step", "loss", "test_nll"]
    assert rows[1:] == [["0", "1.5", ""], ["10", "1.25", "2.5"], ["20", "1.0", ""], ["30", "", "2.0"]]
    back = list(csv.DictReader(io.StringIO(text)))
    assert float(back[1]["test_nll"]) == 2.5 and back[3]["loss"] == ""
    assert recording.curves_csv(SimpleNamespace(curves={})) == "step\n"


def test_recorder_fills_up_before_thinning_and_works_with_two_slots():
    rec = recording.Recorder(max_frames=60)
    for step in range(60):
        rec.add(step, scatter_figure(step))
    assert [s for s, _ in rec.frames] == list(range(60))  # full, not yet thinned
    rec.add(60, scatter_figure(60))
    assert [s for s, _ in rec.frames] == list(range(0, 61, 2))
    two = recording.Recorder(max_frames=2)
    for step in range(37):
        two.add(step, scatter_figure(step))
        assert len(two) <= 2 and two.frames[0][0] == 0 and two.frames[-1][0] == step


def test_gif_heatmap_respects_zmin_zmax():
    fig = heatmap_figure(0)
    fig["data"][0].update(z=np.full((40, 40), 0.5, np.float32), zmin=0.0, zmax=1.0)
    buf = io.BytesIO()
    recording.to_gif([(0, fig)], buf, size=(300, 300))
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    _, (cx, cy) = _plot_area(rgb)
    r, g, b = rgb[int(cy), int(cx)]
    assert r < 80 and 110 < g < 170 and 110 < b < 170, (r, g, b)  # Viridis' middle (#21918c), not an end


def test_mp4_plays_the_frames_in_order_and_holds_the_last(tmp_path):
    """Decoded again, the MP4 has the drawn frames in order (a red marker at the middle, then the heatmap, then a
    blue marker at the top right), each side padded up to the codec's block, and the last frame held a second."""
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    frames = [(0, scatter_figure(0)), (1, heatmap_figure(1)), (2, scatter_figure(2, xy=[(3.0, 3.0)], color="blue"))]
    path = tmp_path / "run.mp4"
    assert recording.to_mp4(frames, path, size=(400, 360), fps=5) == 3
    reader = ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    assert (w, h) == (400, 368)  # 360 rounded up to a multiple of 16
    got = [np.frombuffer(f, np.uint8).reshape(h, w, 3).astype(int) for f in reader]
    assert len(got) == 2 + 5  # the last frame held for a second at 5 frames/s
    for i, (_, fig) in enumerate(frames):  # each frame is its drawing, up to the codec's loss
        want = np.asarray(recording._render(fig, (400, 360)).convert("RGB")).astype(int)
        assert np.abs(got[i][:360] - want).mean() < 6, i
        others = [np.abs(got[i][:360] - np.asarray(recording._render(f, (400, 360)).convert("RGB")).astype(int)).mean()
                  for j, (_, f) in enumerate(frames) if j != i]
        assert min(others) > 2 * np.abs(got[i][:360] - want).mean(), i  # and not another frame
    assert (got[0][360:] > 240).all()  # the padding is white
    assert all(np.abs(g - got[2]).mean() < 1 for g in got[3:])


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    assert not recording.video_available()
    with pytest.raises(recording.VideoUnavailable, match="pip install imageio-ffmpeg"):
        recording.to_mp4([(0, scatter_figure(0))], tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
