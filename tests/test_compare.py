"""Compare: the same data, the same budget, the same metrics for every family."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from live_helpers import SLOW, wait_panel, wait_status

from models import REGISTRY
from playground.compare import compare, table
from playground.datasets import make_split

ROOT = Path(__file__).resolve().parent.parent


def test_compare_scores_every_model_on_the_same_held_out_data():
    data = make_split("8gaussians", 1500, seed=0)
    keys = ["mog"] + (["gan_ns"] if "gan_ns" in REGISTRY else [])
    seen = []
    for entries in compare(keys, data, seconds=1.5, seed=0):
        seen.append([e.status for e in entries])  # the same list, filled in as it goes
    assert [e.key for e in entries] == keys and all(e.status == "done" for e in entries)
    assert seen[0] == ["waiting"] * len(keys) and ["training"] + ["waiting"] * (len(keys) - 1) in seen
    rows = table(entries)
    mog = rows[0]
    data_nll = float(-data.log_prob(data.test).mean())
    assert mog["steps"] > 0 and math.isfinite(mog["test_nll"])
    assert mog["test_nll"] - data_nll < 0.3  # EM converges in a few steps on 8 Gaussians
    assert mog["energy_distance"] < 0.05 and mog["modes_covered"] == 8
    for r in rows:
        assert r["energy_distance"] is not None  # every family gets the sample distance
        if REGISTRY[r["model"]].density == "none":
            assert r["test_nll"] is None  # and a GAN gets no NLL


def test_a_failing_model_is_reported_not_fatal(monkeypatch):
    from playground import compare as cmp

    real = cmp.Session

    def picky(key, *a, **kw):
        if key == "mog":
            raise ValueError("cannot fit this data")
        return real(key, *a, **kw)

    monkeypatch.setattr(cmp, "Session", picky)
    entries = list(compare(["mog"], make_split("moons", 300), seconds=0.2))[-1]
    assert entries[0].status == "failed" and "cannot fit" in entries[0].message


def test_cli_compare_json():
    r = subprocess.run([sys.executable, "-m", "playground", "compare", "--models", "mog", "--seconds", "0.5",
                        "--dataset", "moons", "--n", "500", "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dataset"] == "moons" and out["results"][0]["model"] == "mog"
    assert isinstance(out["results"][0]["test_nll"], float)


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
@pytest.mark.browser
def test_compare_tab_runs(page, app_url, artifacts):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_selector("#compare-models")
    boxes = page.locator("#compare-models input[type=checkbox]")
    for i in range(boxes.count()):  # keep only the mixture and (if present) one GAN
        box = boxes.nth(i)
        want = box.evaluate("b => b.closest('label').innerText").endswith(("(mog)", "(gan_ns)"))
        if box.is_checked() != want:
            box.click()
    sec = page.locator("#compare-seconds input[type=number]")
    sec.fill("2")
    sec.press("Enter")
    n = sum(boxes.nth(i).is_checked() for i in range(boxes.count()))
    page.click("#compare-run")
    # "finished: n/n": the run's first message, before any model starts, says "finished: 0/n models"
    wait_status(page, "compare", f"finished: {n}/{n} models")
    text = page.inner_text("#compare-table")
    assert "Mixture of Gaussians" in text
    # the last frame (with every model's held-out NLL in its panel title) reaches the plot after the status; a
    # panel out of view is not drawn (clicking the boxes at the long list's end may have scrolled it away)
    page.locator("#compare-plot-samples").scroll_into_view_if_needed()
    wait_panel(page, "compare-plot-samples",
               "p.annotations.some(a => a.includes('Mixture of Gaussians') && a.includes('NLL'))")
    page.screenshot(path=str(artifacts / "compare-tab.png"), full_page=True)


def test_a_comparisons_default_models_come_from_the_registry():
    """Each family's representatives (Model2D.in_compare), in the order of the notes; a model that
    declares itself one joins the defaults without any list naming it."""
    from models import REGISTRY, compare_keys, register
    from models.flows.model import RealNVP
    from playground.compare import default_keys

    keys = default_keys()
    assert keys == compare_keys() and all(REGISTRY[k].in_compare for k in keys)
    families = [REGISTRY[k].family for k in keys]
    assert families == sorted(families, key=["autoregressive", "latent", "flow", "gan", "ebm", "diffusion"].index)
    assert set(families) == {"autoregressive", "latent", "flow", "gan", "ebm", "diffusion"}

    @register
    class Representative(RealNVP):
        key = "test_representative"
        in_compare = True

    try:
        assert "test_representative" in default_keys()
    finally:
        REGISTRY.pop("test_representative")


def test_the_samples_grid_fits_its_panel_however_many_models():
    """Ten models (the defaults) or sixteen: every small panel and its title lie inside the figure of the tab's
    panel height (they overflowed below it with three rows of 230 px), in at most two rows."""
    import numpy as np

    from playground.views.compare import samples_grid

    for n in (1, 10, 16):
        rows = [{"model": f"m{i}", "title": f"Model {i} (long name)", "family": "flow", "density": "exact",
                 "status": "done", "test_nll": 2.0} for i in range(n)]
        fig = samples_grid(rows, {}, np.zeros((5, 2), np.float32), (-1, 1, -1, 1), height=480)
        lay = fig["layout"]
        assert lay["height"] == 480
        tops = {lay[k]["domain"][1] for k in lay if k.startswith("yaxis")}
        assert len(tops) <= 2
        for k in lay:
            if k.startswith(("xaxis", "yaxis")):
                lo, hi = lay[k]["domain"]
                assert 0 <= lo < hi <= 1, (n, k, lay[k]["domain"])
        assert all(a["y"] + 34 / 480 <= 1 + 1e-9 for a in lay["annotations"])  # two title lines fit above
        assert all("<br>" in a["text"] and "(" not in a["text"] for a in lay["annotations"])


def test_the_bar_charts_name_every_model_without_crowding():
    """Short names (a key where the title is long), turned when there are many, no legend under them to run into,
    the reference line named at its end, the models with no value named under the title."""
    from playground.views.compare import metric_bars

    rows = [{"model": k, "title": t, "family": "flow", "status": "done", "test_nll": v}
            for k, t, v in (("made", "MADE (masked MLP)", 2.3), ("realnvp", "Real NVP (affine coupling)", 2.2),
                            ("ebm_cd", "EBM: contrastive divergence", 2.4),
                            ("maf", "MAF (masked autoregressive)", 2.25),
                            ("nsf", "Neural spline flow (RQ coupling)", 2.15))]
    rows.append({"model": "gan_ns", "title": "GAN — non-saturating", "family": "gan", "status": "done",
                 "test_nll": None})
    fig = metric_bars(rows, "test_nll", "Held-out NLL", "NLL", 2.13, "true density")
    bars = fig["data"][0]
    assert bars["x"] == ["MADE", "Real NVP", "ebm_cd", "MAF", "nsf"]
    assert fig["layout"]["xaxis"]["tickangle"] == -35 and not fig["layout"]["showlegend"]
    assert fig["layout"]["annotations"][0]["text"] == "true density 2.13"
    assert "no value: gan_ns" in fig["layout"]["title"]["text"]
    few = metric_bars(rows[:2], "test_nll", "Held-out NLL", "NLL")
    assert few["layout"]["xaxis"]["tickangle"] == 0 and "annotations" not in few["layout"]
