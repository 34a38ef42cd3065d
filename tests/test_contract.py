"""One contract over every registered model: whatever family a model is, it must keep these."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from models import REGISTRY, TrainSettings, build, load
from playground.datasets import make_split
from playground.metrics import make_grid
from playground.snapshot import PROBES, MixtureProbe, Probe, make_probe

KEYS = sorted(REGISTRY)


@pytest.fixture(scope="module")
def split():
    return make_split("moons", 600, seed=0)


@pytest.fixture(scope="module")
def data(split):
    return torch.as_tensor(split.train)


def _model(key, data):
    torch.manual_seed(0)
    m = build(key)
    m.init_from_data(data)
    return m


@pytest.mark.parametrize("key", KEYS)
def test_metadata(key):
    cls = REGISTRY[key]
    assert cls.key == key and cls.family and cls.title
    assert cls.density in ("exact", "quadrature", "unnormalized", "bound", "none")
    assert cls.__doc__ or __import__(cls.__module__).__doc__, "cite the notes in a docstring"
    for spec in cls.Config.spec():
        if spec["min"] is not None:
            assert spec["min"] <= spec["default"] <= spec["max"], spec


@pytest.mark.parametrize("key", KEYS)
def test_loss_is_finite_and_reaches_every_parameter(key, data):
    m = _model(key, data)
    terms = m.loss(data[:128])
    assert "loss" in terms and terms["loss"].dim() == 0
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["loss"].backward()
    exempt = tuple(m.grad_exempt)
    for name, p in m.named_parameters():
        if not p.requires_grad or name.startswith(exempt):
            continue
        assert p.grad is not None, f"{name} gets no gradient from the loss"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("key", KEYS)
def test_step_sample_and_density_shapes(key, data):
    m = _model(key, data)
    opts = m.configure_optimizers(TrainSettings(lr=1e-3))
    out = m.step(data[:64], opts)
    assert "loss" in out and all(math.isfinite(v) for v in out.values())
    s = m.sample(37)
    assert s.shape == (37, 2) and torch.isfinite(s).all()
    if m.density != "none":
        with torch.no_grad():
            lp = m.log_prob(data[:50])
        assert lp.shape == (50,) and torch.isfinite(lp).all()
    raw = m.probe(data[:20], data[:20])
    assert isinstance(raw, dict)


@pytest.mark.parametrize("key", KEYS)
def test_drawing_a_frame_leaves_the_model_as_it_was(key, split, data):
    """sample, log_prob and probe only read the model: its parameters and buffers (an EBM's display chains
    among them) are the same after a frame's calls. What the model keeps only for show moves in
    advance_display, which the session calls once per frame."""
    m = _model(key, data)
    opts = m.configure_optimizers(TrainSettings(lr=1e-3))
    for _ in range(3):
        m.step(data[:64], opts)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    grid = torch.as_tensor(make_grid(split.box, 16)[2])
    m.sample(50)
    if m.density != "none":
        with torch.no_grad():
            m.log_prob(grid)
    m.probe(grid, data[:100])
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), f"{key}: drawing a frame changed {k}"


def _no_tensors(v, where: str) -> None:
    assert not isinstance(v, torch.Tensor), where
    if isinstance(v, dict):
        for k, x in v.items():
            _no_tensors(x, f"{where}.{k}")
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _no_tensors(x, f"{where}[{i}]")


@pytest.mark.parametrize("key", KEYS)
def test_probe_fills_its_typed_record(key, split, data):
    """After a few steps, what probe() returns converts strictly (no undeclared, missing or mistyped
    key) into the record its probe_kind names, as the session does, and its arrays are finite numpy
    arrays (apart from fields documented to allow inf / NaN)."""
    m = _model(key, data)
    assert m.probe_kind == "none" or m.probe_kind in PROBES, m.probe_kind
    opts = m.configure_optimizers(TrainSettings(lr=1e-3))
    for _ in range(5):
        m.step(data[:64], opts)
    m.sample(50)
    m.advance_display()  # what a frame does before probing (EBMs move their display chains here)
    grid = torch.as_tensor(make_grid(split.box, 24)[2])
    raw = m.probe(grid, data[:100])
    rec = make_probe(m.probe_kind, raw)
    if m.probe_kind == "none":
        assert rec is None
        return
    assert type(rec) is PROBES[m.probe_kind]
    _no_tensors(dataclasses.asdict(rec), key)
    arrays = rec.arrays()
    assert arrays, "a record with no arrays"
    for name, v in arrays.items():
        assert isinstance(v, np.ndarray) and v.size, name
    assert not rec.nonfinite(), f"non-finite values in {rec.nonfinite()}"
    declared = {f.name for f in dataclasses.fields(rec)}
    assert set(raw) <= declared


def test_every_record_is_some_models():
    kinds = {cls.probe_kind for cls in REGISTRY.values()}
    assert set(PROBES) <= kinds, f"records no model fills: {set(PROBES) - kinds}"


def test_records_are_strict():
    good = {"weights": np.ones(2, np.float32), "means": np.zeros((2, 2)), "covariances": np.zeros((2, 2, 2)),
            "point_labels": np.zeros(3, np.int32), "point_confidence": np.ones(3)}
    assert isinstance(make_probe("mixture", good), MixtureProbe)
    assert make_probe("mixture", {}) is None
    with pytest.raises(KeyError, match="'extra_key'"):
        make_probe("mixture", {**good, "extra_key": np.zeros(1)})
    with pytest.raises(KeyError, match="'weights'"):
        make_probe("mixture", {k: v for k, v in good.items() if k != "weights"})
    with pytest.raises(TypeError, match="MixtureProbe.means"):
        make_probe("mixture", {**good, "means": [[0.0, 0.0]]})
    with pytest.raises(KeyError, match="probe_kind"):
        make_probe("none", good)
    rec = make_probe("student", {**{k: np.zeros(2) for k in ("stage_lines", "stage_nodes", "stage_logp",
                                                            "layer_log_det", "layer_names", "latent",
                                                            "teacher_log_density", "teacher_x", "teacher_y")},
                                 "teacher_steps": np.array(7, np.int32), "phase": np.array("student")})
    assert rec.teacher_steps == 7 and type(rec.teacher_steps) is int and rec.phase == "student"
    with pytest.raises(TypeError, match="teacher_steps"):
        make_probe("student", {**dataclasses.asdict(rec), "teacher_steps": 1.5})
    assert issubclass(type(rec), Probe)


@pytest.mark.parametrize("key", KEYS)
def test_save_load_round_trip(key, data, tmp_path):
    m = _model(key, data)
    opts = m.configure_optimizers(TrainSettings(lr=1e-3))
    for _ in range(3):
        m.step(data[:64], opts)
    path = tmp_path / f"{key}.pt"
    m.save(path)
    m2 = load(path)
    for (n1, a), (n2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b), n1
    if m.density != "none":
        with torch.no_grad():
            torch.testing.assert_close(m.log_prob(data[:40]), m2.log_prob(data[:40]))
    torch.manual_seed(5)
    s1 = m.sample(10)
    torch.manual_seed(5)
    s2 = m2.sample(10)
    torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_a_run_draws_only_from_its_own_generators(key):
    """Every model's training and sampling draw from the run's own generators (RunGenerators): another
    session reseeding and drawing from torch's global generator between steps changes neither the weights
    nor the samples, bit for bit (the same seed gives the same run whoever else is training)."""
    import copy

    from playground.session import Session

    data = make_split("8gaussians", 400, seed=0)

    def run(disturb: bool):
        sess = Session(key, None, data, TrainSettings(seed=3, batch=64), device="cpu")
        samples = []
        for i in range(3):
            assert sess.train_steps(1)
            if disturb:
                torch.manual_seed(1000 + i)
                torch.randn(7)
            samples.append(sess.model.sample(16).detach().clone())
        return copy.deepcopy(sess.model.state_dict()), samples

    (quiet, s_quiet), (disturbed, s_disturbed) = run(False), run(True)
    for name, v in quiet.items():
        assert torch.equal(disturbed[name], v), name
    for a, b in zip(s_quiet, s_disturbed):
        assert torch.equal(a, b)


def test_the_registry_decides_each_tabs_models_and_each_familys_view():
    """Every registered model is offered by exactly one tab, the tab of its family, in menu order
    (models.family_keys); a new model of a family (here a Real NVP subclass registered under a new key)
    is in that list and gets the family's view without any table naming it."""
    import importlib

    from models import family_keys
    from models.base import REGISTRY, register
    from models.flows.model import RealNVP
    from playground import views
    from playground.session import Session
    from playground.tabs import TABS

    offered: dict[str, str] = {}
    for name in TABS:
        spec = getattr(importlib.import_module(f"playground.tabs.{name}"), "SPEC", None)
        if spec is None:
            continue
        families = {REGISTRY[k].family for k in spec.models}
        assert len(families) == 1 and spec.models == family_keys(families.pop()), name
        for k in spec.models:
            assert k not in offered, k
            offered[k] = name
    assert set(offered) == set(REGISTRY)

    @register
    class AnotherRealNVP(RealNVP):
        key = "test_another_realnvp"

    try:
        assert "test_another_realnvp" in family_keys("flow")
        session = Session("test_another_realnvp", None, make_split("moons", 200, seed=0), device="cpu")
        figs = views.render(session.snapshot())
        assert {"main", "layers", "latent", "perlayer"} <= set(figs)  # the flows' panels
    finally:
        REGISTRY.pop("test_another_realnvp")


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_every_model_has_its_explain_text(key):
    """A model's "what you are seeing" text is its own file, playground/explain/<key>.md, with the
    family's common part after it and its includes resolved (nothing of the template syntax is left)."""
    from playground import explain

    assert explain.has_text(key), f"playground/explain/{key}.md is missing"
    text = explain.text(key, REGISTRY[key].family)
    assert len(text) > 300 and "{{include" not in text, key


def test_explain_text_joins_a_models_file_its_includes_and_its_family_part(tmp_path, monkeypatch):
    from playground import explain

    (tmp_path / "toy.md").write_text("### Toy\nown text\n\n{{include shared}}\n")
    (tmp_path / "_shared.md").write_text("shared part\n")
    (tmp_path / "_toyfam.md").write_text("family part\n")
    monkeypatch.setattr(explain, "HERE", tmp_path)
    explain.text.cache_clear()
    try:
        assert explain.text("toy", "toyfam") == "### Toy\nown text\n\nshared part\n\nfamily part\n"
        assert explain.text("toy", "otherfam") == "### Toy\nown text\n\nshared part\n"
        with pytest.raises(explain.ExplainError):
            explain.text("nosuch", "toyfam")
    finally:
        explain.text.cache_clear()
