"""The flows' frames as the app draws them, their command line and the zuko reference timing."""

import json

import numpy as np
import pytest

from models import TrainSettings
from playground import cli, plots, views
from playground.bench import REFERENCES
from playground.datasets import make_split
from playground.session import Session

PANELS = {"main", "samples", "layers", "latent", "curves", "terms", "distance", "perlayer"}


def frames(key, dataset, cfg=None, steps=40):
    sess = Session(key, cfg or {}, make_split(dataset, 600, seed=0), TrainSettings(batch=128, lr=5e-3))
    snaps = list(sess.run(max_steps=steps, frame_interval=0.0))
    return snaps[-1]


def traces_named(fig, text):
    return [t for t in fig["data"] if text in str(t.get("name", ""))]


@pytest.mark.parametrize("key,dataset", [("nice", "moons"), ("realnvp", "8gaussians"), ("maf", "banana"),
                                         ("iaf", "moons"), ("planar", "u1")])
def test_flow_frame_has_every_panel_and_the_slider_picks_the_layer(key, dataset):
    snap = frames(key, dataset, {"layers": 4})
    figs = views.render(snap, layer=2)
    assert set(figs) == PANELS
    for fig in figs.values():
        json.loads(plots.to_json(fig))
    assert "layer 2/" in figs["layers"]["layout"]["title"]["text"].lower()
    assert "Base N(0, I)" in views.render(snap, layer=0)["layers"]["layout"]["title"]["text"]
    depth = len(snap.probe.layer_names)  # NICE adds its scaling layer
    assert depth == 4 + (key == "nice")
    assert f"{depth}/{depth}" in views.render(snap, layer=99)["layers"]["layout"]["title"]["text"]  # clamped
    bars = figs["perlayer"]["data"][0]
    assert len(bars["y"]) == depth and bars["marker"]["color"][1] != bars["marker"]["color"][0]  # layer 2 lit
    nodes = traces_named(figs["layers"], "grid nodes")[0]
    assert len(nodes["x"]) == len(snap.probe.stage_nodes[2]) and np.isfinite(nodes["marker"]["color"]).all()
    assert "∫p dx on the grid ≈" in figs["main"]["layout"]["title"]["text"]
    names = [t["name"] for t in figs["terms"]["data"]]
    if key == "planar":  # reverse KL: the KL, its two terms and the bounds on log Z
        assert any("KL" in n for n in names) and any("bound" in n for n in names)
        assert traces_named(figs["main"], "target")  # the target's contours over the model
    else:
        assert any("log N" in n for n in names) and any("log|det" in n for n in names)


def test_student_frames_show_teacher_and_student_side_by_side():
    snap = frames("iaf_student", "banana", {"layers": 2, "teacher_steps": 50}, steps=30)
    figs = views.render(snap)
    assert set(figs) == PANELS and "Teacher (MAF): phase 1" in figs["main"]["layout"]["title"]["text"]
    assert figs["main"]["data"][0]["type"] == "heatmap" and figs["samples"]["data"][0]["type"] == "heatmap"
    assert "Phase 1" in figs["terms"]["layout"]["title"]["text"]
    sess = Session("iaf_student", {"layers": 2, "teacher_steps": 50}, make_split("banana", 600, seed=0),
                   TrainSettings(batch=128))
    snaps = list(sess.run(max_steps=80, frame_interval=0.0))
    figs = views.render(snaps[-1])
    assert "frozen" in figs["main"]["layout"]["title"]["text"]
    assert "Student" in figs["layers"]["layout"]["title"]["text"]
    assert figs["terms"]["layout"]["yaxis"]["type"] == "log"
    assert traces_named(figs["curves"], "teacher, held-out")


def test_cli_trains_a_flow_and_reports_the_held_out_nll(capsys):
    assert cli.main(["train", "realnvp", "--dataset", "moons", "--steps", "60", "--batch", "128", "--json",
                     "--set", "layers=4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "realnvp" and out["steps"] == 60
    assert np.isfinite(out["metrics"]["test_nll"]) and "log_det" in out["metrics"]


def test_cli_refuses_reverse_kl_without_a_density(capsys):
    assert cli.main(["train", "maf", "--dataset", "moons", "--steps", "5", "--set", "fit=target"]) == 2
    err = capsys.readouterr().err
    assert "target" in err and "U1" in err


def test_bench_times_the_same_flow_built_with_zuko():
    split = make_split("moons", 600, seed=0)
    for key in ("realnvp", "maf"):
        res = REFERENCES[key]({"layers": 2, "hidden": 16}, split, TrainSettings(batch=64), 0.2, "cpu")
        rates = res["steps_per_second"]
        assert set(rates) == {"ours", "zuko", "zuko_fused"} and min(rates.values()) > 0
        assert res["zuko_ratio"] == pytest.approx(rates["ours"] / rates["zuko"], rel=1e-2)
        assert "zuko" in res["zuko"]
