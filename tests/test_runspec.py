"""RunSpec: one run's settings as one value, to and from a share link, without any widget."""

import dataclasses
from urllib.parse import parse_qsl

import numpy as np
import pytest

from models import REGISTRY, ConfigError, TrainSettings
from playground.datasets import DATASETS, DataError
from playground.runspec import RunSpec


def _query(link: str) -> dict:
    assert link.startswith("?")
    return dict(parse_qsl(link[1:].split("  ")[0]))


def _moved(key: str) -> dict:
    """The model's config with every field moved off its default (numbers to their top, choices to the
    last one, booleans flipped), so a round trip cannot pass by falling back to defaults."""
    out = {}
    for s in REGISTRY[key].Config.spec():
        if s["choices"]:
            out[s["name"]] = s["choices"][-1] if s["choices"][-1] != s["default"] else s["choices"][0]
        elif s["type"] == "bool":
            out[s["name"]] = not s["default"]
        elif s["max"] is not None:
            out[s["name"]] = type(s["default"])(s["max"])
        else:
            out[s["name"]] = s["default"]
    return REGISTRY[key].Config.make(**out).as_dict()


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_a_link_brings_back_the_same_run(key):
    run = RunSpec(key, _moved(key), TrainSettings(lr=1.5e-3, batch=64, seed=7), dataset="banana", n_points=3300,
                  noise=0.31, device="cpu").check()
    base = RunSpec(key, REGISTRY[key].Config().as_dict())
    back, named, notes = RunSpec.from_query(_query(run.to_query("tab")), base, sorted(REGISTRY))
    assert back == run, key
    assert notes == []
    assert {"data", "n", "device", "lr", "batch", "seed"} <= named and set(run.config) <= named


def test_a_link_names_what_it_ignored_and_leaves_the_rest_as_it_was():
    base = RunSpec("made", REGISTRY["made"].Config().as_dict(), TrainSettings(lr=1e-2))
    q = {"model": "made", "K": "100000", "hidden": "zebra", "dataset": "nosuch", "lr": "5", "batch": "64",
         "n": "7", "order": "x2_first"}
    run, named, notes = RunSpec.from_query(q, base, ["made"])
    assert run.config["K"] == base.config["K"] and run.config["hidden"] == base.config["hidden"]
    assert run.settings.lr == 1e-2 and run.settings.batch == 64
    assert run.dataset == base.dataset and "data" not in named
    assert named == {"batch", "order"} and run.config["order"] == "x2_first"
    assert len(notes) == 1
    for bad in ("K=100000", "hidden=zebra", "dataset=nosuch", "lr=5", "n=7"):
        assert bad in notes[0]
    # a model the tab does not offer: the tab's own, and the link says why
    run, _, notes = RunSpec.from_query({"model": "vae"}, base, ["made"])
    assert run.model == "made" and "model=vae" in notes[0]


def test_a_models_usual_settings_apply_where_the_link_says_nothing():
    base = RunSpec("vae", REGISTRY["vae"].Config().as_dict())
    usual = {"vae": {"lr": 3e-3, "batch": 256}}
    run, _, _ = RunSpec.from_query({"model": "vae"}, base, ["vae"], usual=usual)
    assert (run.settings.lr, run.settings.batch) == (3e-3, 256)
    run, _, _ = RunSpec.from_query({"model": "vae", "batch": "32"}, base, ["vae"], usual=usual)
    assert (run.settings.lr, run.settings.batch) == (3e-3, 32)


def test_an_old_setting_name_in_a_link_is_read_as_its_new_one_and_said():
    renamed = [(k, old, new) for k, c in REGISTRY.items() for old, new in c.Config.renamed.items()]
    if not renamed:
        pytest.skip("no renamed settings")
    key, old, new = renamed[0]
    spec = {s["name"]: s for s in REGISTRY[key].Config.spec()}[new]
    value = spec["max"] if spec["max"] is not None else spec["default"]
    base = RunSpec(key, REGISTRY[key].Config().as_dict())
    run, named, notes = RunSpec.from_query({"model": key, old: str(value)}, base, [key])
    assert run.config[new] == value and new in named
    assert any(f"'{old}'" in n and f"'{new}'" in n for n in notes)


def test_check_refuses_what_cannot_run():
    ok = RunSpec("mog", REGISTRY["mog"].Config().as_dict())
    ok.check()
    with pytest.raises(ConfigError):
        dataclasses.replace(ok, model="nosuch").check()
    with pytest.raises(ConfigError):
        dataclasses.replace(ok, config={**ok.config, "K": 10_000}).check()
    with pytest.raises(DataError):
        dataclasses.replace(ok, dataset="nosuch").check()
    with pytest.raises(DataError):
        dataclasses.replace(ok, source="Upload CSV", csv=None).check()
    with pytest.raises(ConfigError):
        dataclasses.replace(ok, device="tpu").check()


def test_the_signature_keeps_a_session_exactly_when_it_can_go_on():
    """Live fields (taken while training) and the learning rate keep the signature; anything that changes
    the data, the model's shape or the seed does not."""
    key = "ebm_cd"
    run = RunSpec(key, REGISTRY[key].Config().as_dict())
    live = [s["name"] for s in REGISTRY[key].Config.spec() if s["live"]]
    fixed = [s for s in REGISTRY[key].Config.spec() if not s["live"] and s["max"] is not None]
    assert live and fixed
    s = {x["name"]: x for x in REGISTRY[key].Config.spec()}[live[0]]
    moved = s["max"] if s["max"] is not None else s["default"]
    assert dataclasses.replace(run, config={**run.config, live[0]: moved}).signature() == run.signature()
    assert dataclasses.replace(run, settings=TrainSettings(lr=1e-2)).signature() == run.signature()
    f = fixed[0]
    assert dataclasses.replace(run, config={**run.config, f["name"]: f["max"]}).signature() != run.signature()
    assert dataclasses.replace(run, settings=TrainSettings(seed=1)).signature() != run.signature()
    assert dataclasses.replace(run, noise=0.5).signature() != run.signature()
    assert dataclasses.replace(run, n_points=1000).signature() != run.signature()


def test_the_same_spec_makes_the_same_data(tmp_path):
    run = RunSpec("mog", dataset="moons", n_points=500, noise=DATASETS["moons"].noise)
    a, b = run.build_data(), run.build_data()
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    other = dataclasses.replace(run, settings=TrainSettings(seed=3)).build_data()
    assert not np.array_equal(a.train, other.train)
    path = tmp_path / "pts.csv"
    path.write_text("x,y\n" + "\n".join(f"{i * 0.1},{(i % 7) * 0.3}" for i in range(200)))
    up = RunSpec("mog", source="Upload CSV", csv=str(path))
    assert up.build_data().n == 200
    assert "pts=p1." in up.to_query("latent")  # the points travel in the link (tests below)


def _reopen(q: str, base: RunSpec, models=("mog",)):
    from urllib.parse import parse_qsl

    return RunSpec.from_query(dict(parse_qsl(q[1:].split("  (")[0])), base, list(models))


def test_a_drawing_travels_in_the_link_and_makes_the_same_data():
    import json

    sketch = json.dumps([[[0.0, 0.0], [1.25, 1.0], [2.0, 0.5]], [[-1.0, -1.5]], [[-3.0, 2.0], [-2.0, 2.5]]])
    run = RunSpec("mog", source="Draw", sketch=sketch, n_points=700, draw_noise=0.12,
                  settings=TrainSettings(seed=4))
    back, named, notes = _reopen(run.to_query("latent"), RunSpec("mog"))
    assert notes == [] and "drawing" in named and back.source == "Draw" and back.draw_noise == 0.12
    a, b = run.build_data(), back.build_data()
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)  # the pad's values come back exactly


def test_uploaded_points_travel_in_the_link_quantised(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1500, 2)) * [3.0, 0.2] + [10.0, -4.0]
    path = tmp_path / "mine.csv"
    np.savetxt(path, pts, delimiter=",", header="a,b", comments="")
    run = RunSpec("mog", source="Upload CSV", csv=str(path), standardise=True, settings=TrainSettings(seed=2))
    q = run.to_query("latent")
    assert "  (" not in q  # nothing left out
    back, named, notes = _reopen(q, RunSpec("mog"))
    assert notes == [] and "points" in named and back.source == "Upload CSV" and back.standardise
    a, b = run.build_data(), back.build_data()
    step = np.ptp(pts, 0) / 65535  # in the data's units; standardised, scaled by the spread
    assert a.train.shape == b.train.shape
    assert (np.abs(a.train - b.train).max(0) <= (step / pts.std(0)) * 0.51 + 1e-6).all()
    # the same link again: the same file (by content), not one more
    again, _, _ = _reopen(q, RunSpec("mog"))
    assert again.csv == back.csv


def test_link_points_not_opened_for_a_day_are_removed(tmp_path, monkeypatch):
    import os
    import time

    from playground import runspec

    monkeypatch.setattr(runspec, "LINK_FILES", str(tmp_path / "links"))
    pts = np.random.default_rng(1).normal(size=(40, 2))
    up = tmp_path / "up.csv"
    np.savetxt(up, pts, delimiter=",", header="x,y", comments="")
    q = RunSpec("mog", source="Upload CSV", csv=str(up)).to_query("latent")
    kept = _reopen(q, RunSpec("mog"))[0].csv
    stale = tmp_path / "links" / "old.csv"
    stale.write_text("x,y\n0,0\n")
    day_ago = time.time() - runspec.LINK_FILES_AGE - 60
    os.utime(stale, (day_ago, day_ago))
    os.utime(kept, (day_ago, day_ago))
    assert _reopen(q, RunSpec("mog"))[0].csv == kept  # opened again: kept, and its clock restarts
    assert runspec.prune_link_files() == 1 and not stale.exists() and os.path.exists(kept)
    assert runspec.prune_link_files(now=time.time() + runspec.LINK_FILES_AGE + 60) == 1 and not os.path.exists(kept)


def test_too_many_points_are_left_out_and_the_link_says_so(tmp_path):
    path = tmp_path / "big.csv"
    np.savetxt(path, np.random.default_rng(0).normal(size=(5000, 2)), delimiter=",")
    q = RunSpec("mog", source="Upload CSV", csv=str(path)).to_query("latent")
    assert "pts=" not in q and "the 5,000 points are too many for a link (at most 2,000)" in q


def test_a_damaged_link_opens_with_the_tabs_data_and_a_note():
    import json

    run = RunSpec("mog", source="Draw", sketch=json.dumps([[[0.0, 0.0], [1.0, 1.0]]]), n_points=500)
    q = run.to_query("latent")
    for broken in (q.replace("draw=s1.", "draw=s1.x"), q[: q.index("draw=") + 20] + "&n=500",
                   q.replace("draw=s1.", "draw=s9.")):
        back, named, notes = _reopen(broken, RunSpec("mog"))
        assert back.source == "Built-in" and "drawing" not in named
        assert len(notes) == 1 and notes[0].startswith("The drawing in the link could not be read (")
