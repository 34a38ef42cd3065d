"""One vocabulary of hyperparameter names across the families, and the old names still accepted.

Hidden layers are `depth` everywhere (`g_depth` / `d_depth` for a GAN's two players), `layers` is a flow's
number of flow layers only, and an activation is `activation`. An old name (a Config's `renamed`) is taken as its
new one by make, coerce, replace, build and a saved checkpoint's load, with a one-line RenamedSettingWarning; the
command line's --set: tests/test_cli.py."""

import warnings

import pytest
import torch

from models import REGISTRY, ConfigError, TrainSettings, build, load
from models.base import RenamedSettingWarning

RENAMES = sorted({(key, old, new) for key, cls in REGISTRY.items() for old, new in cls.Config.renamed.items()})


def other_value(cfg_cls, name):
    """A valid value of field `name` other than its default (so that a name taken wrongly shows)."""
    spec = next(s for s in cfg_cls.spec() if s["name"] == name)
    if spec["choices"]:
        return next(c for c in spec["choices"] if c != spec["default"])
    return spec["max"] if spec["default"] != spec["max"] else spec["min"]


def test_the_names_are_the_same_in_every_family():
    for key, cls in REGISTRY.items():
        names = {s["name"] for s in cls.Config.spec()}
        assert not names & {"act", "g_layers", "d_layers"}, key
        assert cls.family == "flow" or "layers" not in names, key  # hidden layers are `depth` outside the flows
    assert {"depth", "activation"} <= {s["name"] for s in REGISTRY["ebm_cd"].Config.spec()}
    for key in ("made", "rnade", "ebm_cd", "ebm_sm", "ebm_nce", "vae", "realnvp", "maf"):
        assert "depth" in {s["name"] for s in REGISTRY[key].Config.spec()}, key


def test_the_old_names_of_the_rename_are_kept():
    """The names before the families agreed (kept working for saved checkpoints, links and scripts)."""
    for key, cls in REGISTRY.items():
        expected = ({"layers": "depth"} if key in ("made", "rnade", "vae") else
                    {"layers": "depth", "act": "activation"} if cls.family == "ebm" else
                    {"g_layers": "g_depth", "d_layers": "d_depth"} if cls.family == "gan" else {})
        assert cls.Config.renamed == expected, key


def test_every_renamed_name_is_old_and_leads_to_a_current_one():
    for cls in [TrainSettings] + [c.Config for c in REGISTRY.values()]:
        names = {f.name for f in cls.fields()}
        for old, new in cls.renamed.items():
            assert old not in names and new in names, (cls.__name__, old, new)
            assert cls.canonical(old) == (new, f"'{old}' is now '{new}'")
        for name in names:
            assert cls.canonical(name) == (name, None)
    assert REGISTRY["realnvp"].Config.canonical("layers") == ("layers", None)  # a flow's layers are its own


@pytest.mark.parametrize("key, old, new", RENAMES)
def test_an_old_name_gives_the_same_config_as_the_new_one_with_a_note(key, old, new):
    cfg_cls = REGISTRY[key].Config
    value = other_value(cfg_cls, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name: no note
        current = cfg_cls.make(**{new: value})
        assert cfg_cls.coerce(new, str(value)) == value
    assert getattr(current, new) == value and current != cfg_cls()
    note = f"'{old}' is now '{new}'"
    with pytest.warns(RenamedSettingWarning, match=note):
        assert cfg_cls.make(**{old: value}) == current
    with pytest.warns(RenamedSettingWarning, match=note):
        assert cfg_cls.coerce(old, str(value)) == value  # a raw string, as from a link or the command line
    with pytest.warns(RenamedSettingWarning, match=note):
        assert cfg_cls().replace(**{old: value}) == current
    with pytest.warns(RenamedSettingWarning, match=note):
        assert build(key, **{old: value}).cfg == current


def test_an_old_name_keeps_its_new_names_checks_and_unknown_names_are_refused():
    cfg_cls = REGISTRY["ebm_cd"].Config
    with pytest.warns(RenamedSettingWarning), pytest.raises(ConfigError, match=r"depth: 9 is outside"):
        cfg_cls.make(layers=9)
    with pytest.warns(RenamedSettingWarning), pytest.raises(ConfigError, match="activation: 'relu' is not one of"):
        cfg_cls.coerce("act", "relu")
    with pytest.raises(ConfigError, match="'layers' and 'depth' name the same setting"):
        cfg_cls.make(depth=2, layers=3)
    for name in ("bogus", "g_layers", "Layers"):
        with pytest.raises(ConfigError, match=f"unknown setting '{name}'") as err:
            cfg_cls.make(**{name: 1})
        assert "'act'" not in str(err.value) and ", act," not in str(err.value)  # old names are not offered
        assert cfg_cls.canonical(name) == (name, None)
    with pytest.raises(ConfigError, match="unknown setting 'layers'"):
        REGISTRY["mog"].Config.make(layers=2)  # renamed only where it was a name


@pytest.mark.parametrize("key", ["made", "rnade", "ebm_cd", "gan_ns", "wgan_gp", "vae"])
def test_a_checkpoint_saved_with_the_old_names_loads(key, tmp_path):
    """A checkpoint saved before the rename (its config under the old names) loads into the same model."""
    cls = REGISTRY[key]
    renamed = cls.Config.renamed
    model = build(key, **{new: other_value(cls.Config, new) for new in renamed.values()})
    path = tmp_path / f"{key}.pt"
    model.save(path)
    blob = torch.load(path, weights_only=True)
    blob["config"] = {next((o for o, n in renamed.items() if n == k), k): v for k, v in blob["config"].items()}
    assert set(renamed) <= set(blob["config"])  # saved as an old checkpoint was
    torch.save(blob, path)
    with pytest.warns(RenamedSettingWarning) as caught:
        loaded = load(path)
    assert sorted(str(w.message).split(": ", 1)[1] for w in caught) == sorted(
        f"'{o}' is now '{n}'" for o, n in renamed.items())
    assert loaded.cfg == model.cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
