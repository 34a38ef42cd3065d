"""One contract over every registered model: whatever family a model is, it must keep these."""

import math

import pytest
import torch

from models import REGISTRY, TrainSettings, build, load
from playground.datasets import make_split

KEYS = sorted(REGISTRY)


@pytest.fixture(scope="module")
def data():
    return torch.as_tensor(make_split("moons", 600, seed=0).train)


def _model(key, data):
    torch.manual_seed(0)
    m = build(key)
    m.init_from_data(data)
    return m


@pytest.mark.parametrize("key", KEYS)
def test_metadata(key):
    cls = REGISTRY[key]
    assert cls.key == key and cls.family and cls.title
    assert cls.density in ("exact", "unnormalized", "bound", "none")
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
    exempt = tuple(getattr(m, "grad_exempt", ()))
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
    extras = m.probe(data[:20], data[:20])
    assert isinstance(extras, dict)


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
