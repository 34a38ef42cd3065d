"""GAN frames as the app draws them, and the command line for every GAN objective."""

import csv
import json
import math

import numpy as np
import pytest

from models import TrainSettings, family_keys
from playground import cli, plots, views
from playground.datasets import make_split
from playground.session import Session
from playground.views.gans import arrow_segments, grid_axes

KEYS = family_keys("gan")  # every registered GAN, as the tab offers them

GRID = 40


@pytest.fixture(scope="module")
def data():
    return make_split("8gaussians", 800, seed=0)


@pytest.fixture(scope="module")
def snaps(data):
    out = {}
    for key in KEYS:
        sess = Session(key, {}, data, TrainSettings(seed=0, batch=128), device="cpu", grid_res=GRID,
                       n_show=300, n_samples=300)
        sess.train_steps(15)
        sess.snapshot()
        sess.train_steps(15)
        out[key] = sess.snapshot()
    return out


@pytest.mark.parametrize("key", KEYS)
def test_frame_shows_the_game_not_a_density(key, snaps):
    snap = snaps[key]
    assert snap.log_density is None and "test_nll" not in snap.latest  # GANs have no density
    assert {"divergence", "hist_js", "modes_covered", "high_quality", "d_loss", "g_loss", "g_grad_norm"} <= set(
        snap.latest)
    figs = views.render(snap)
    own = {"bigan": {"latent", "recon"}, "cyclegan": {"translate", "cycle"}}.get(key, set())  # a model's own panels
    assert set(figs) == {"main", "samples", "curves", "extra", "modes", "grad"} | own
    for fig in figs.values():
        json.loads(plots.to_json(fig))
    main = figs["main"]
    heat = [t for t in main["data"] if t["type"] == "heatmap"]
    assert len(heat) == 1 and heat[0]["z"].shape == (GRID, GRID)
    assert heat[0]["zmin"] < heat[0]["zmid"] < heat[0]["zmax"]
    names = [t.get("name", "") for t in main["data"]]
    assert any(n.startswith("G's push") for n in names) and "real" in names
    fake = "fake Ḡ(x), x ∈ moons" if key == "cyclegan" else "fake Ḡ(z)"  # a CycleGAN's G reads a source point
    assert fake in names
    assert snap.probe.averaged  # the default generator is averaged: its samples are Ḡ's, and say so
    assert main["layout"]["xaxis"]["title"]["text"] == "x₁"
    lines = [t for t in figs["samples"]["data"] if t.get("mode") == "lines"]
    assert len(lines) == 2  # latent dimension 2: lines of constant z1 and of constant z2
    curves = {t["name"] for t in figs["curves"]["data"]}
    assert ({"D loss", "G loss"} <= curves or {"critic loss E_q f − E_p f", "G loss"} <= curves
            or {"D_Y + D_X loss", "G + F GAN terms"} <= curves)
    assert any(t.get("yaxis") == "y2" for t in figs["modes"]["data"])  # modes covered on its own axis
    assert figs["grad"]["layout"]["yaxis"]["type"] == "log"


def test_surface_is_the_probability_for_classic_gans(snaps):
    heat = views.render(snaps["gan_ns"])["main"]["data"][0]
    assert heat["zmin"] == 0.0 and heat["zmax"] == 1.0 and heat["zmid"] == 0.5
    z = heat["z"]
    assert (z >= 0).all() and (z <= 1).all()
    heat = views.render(snaps["fgan_rkl"])["main"]["data"][0]
    assert heat["zmid"] == -1.0  # T = f'(1) = -1 where p = q
    assert (heat["z"] < 0).all()  # reverse KL's activation -exp(-v) is negative


def test_arrows_point_along_the_push_and_can_be_hidden(snaps):
    xy = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    push = np.array([[1.0, 0.0], [0.0, -2.0]], np.float32)
    seg, mean = arrow_segments(xy, push, 0.5)
    assert mean == pytest.approx(1.5)
    tips = seg.reshape(2, 7, 2)[:, 1]
    assert tips[1, 0] == pytest.approx(1.0) and tips[1, 1] < 1.0  # straight down, as pushed
    assert tips[0, 0] > 0 and tips[0, 1] == pytest.approx(0.0)
    assert np.isnan(seg.reshape(2, 7, 2)[:, 2]).all()  # breaks between arrows
    figs = views.render(snaps["gan_ns"], show_push=False)
    assert not any(t.get("name", "").startswith("G's push") for t in figs["main"]["data"])


def test_manifold_of_a_one_dimensional_latent_is_one_curve(data):
    sess = Session("gan_ns", {"latent_dim": 1}, data, TrainSettings(seed=0), device="cpu", grid_res=GRID)
    sess.train_steps(5)
    fig = views.render(sess.snapshot())["samples"]
    lines = [t for t in fig["data"] if t.get("mode") == "lines"]
    assert len(lines) == 1 and "latent line" in fig["layout"]["title"]["text"]


def test_grid_axes_match_the_session_grid(data, snaps):
    xs, ys = grid_axes(data.box, GRID * GRID)
    assert len(xs) == GRID and xs[0] == data.box[0] and ys[-1] == data.box[3]


@pytest.mark.parametrize("key", KEYS)
def test_cli_trains_and_saves_samples(key, tmp_path, capsys):
    out = tmp_path / f"{key}.csv"
    rc = cli.main(["train", key, "--dataset", "25gaussians", "--n", "500", "--steps", "10", "--json",
                   "--save-samples", str(out), "--samples", "300"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert {"divergence", "hist_js", "modes_covered", "high_quality"} <= set(res["metrics"])
    assert "test_nll" not in res["metrics"] and math.isfinite(res["metrics"]["divergence"])
    with open(out) as f:
        rows = list(csv.reader(f))
    vals = np.array(rows[1:], float)
    assert vals.shape == (300, 2) and np.isfinite(vals).all()


def test_a_new_gan_brings_its_own_labels_to_the_views(data):
    """What the heatmap shows, what the divergence bounds and where the losses settle come from the model
    class through its probe, so a GAN registered under a new key needs no table in the views."""
    from models import REGISTRY, register
    from models.gans.fgan import FGANJS

    @register
    class LabelledGAN(FGANJS):
        key = "test_labelled_gan"
        surface_label = "T★(x)"
        divergence_label = "a test bound on JSD"
        equilibrium = (0.25, -0.5)

    try:
        sess = Session("test_labelled_gan", {}, data, TrainSettings(seed=0, batch=64), device="cpu", grid_res=20)
        sess.train_steps(3)
        figs = views.render(sess.snapshot())
        assert "T★(x)" in figs["main"]["layout"]["title"]["text"]
        assert [t["name"] for t in figs["extra"]["data"]][0] == "a test bound on JSD"
        lines = {t["name"] for t in figs["curves"]["data"]}
        assert "D loss when D cannot tell (0.25)" in lines and "G loss then (-0.5)" in lines
    finally:
        REGISTRY.pop("test_labelled_gan")
    # and the registered ones keep theirs: the classic GAN's D is a probability, a WGAN's a critic gap
    assert REGISTRY["gan_ns"].probability and not REGISTRY["gan_ns"].wasserstein
    assert REGISTRY["wgan_gp"].wasserstein and "W₁" in REGISTRY["wgan_gp"].divergence_label
