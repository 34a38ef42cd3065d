"""The Lessons tab's data (playground/lessons.py): every lesson's link opens an existing tab and model, and the
tab reads every setting it names (nothing ignored, nothing under an old name) — checked as a shared link is
read, RunSpec.from_query over the tab's defaults."""

import dataclasses
import html
import re
from urllib.parse import parse_qsl

import pytest

from models import REGISTRY
from playground import lessons as L
from playground.runspec import RunSpec
from playground.tabs import TABS

LINKS = [(lesson, label, query) for lesson in L.LESSONS for label, query in lesson.links()]
IDS = [f"{lesson.id}:{label}" for lesson, label, _ in LINKS]


def _read(lesson, query):
    """The link's query string, read back as the tab reads a link."""
    q = dict(parse_qsl(L.link(lesson.tab, query)[1:]))
    spec = L.tab_spec(lesson.tab)
    return q, *RunSpec.from_query(q, L.tab_default(lesson.tab, q["model"]), spec.models, usual=spec.model_settings)


def test_ids_are_unique_and_every_lesson_has_what_a_card_needs():
    ids = [lesson.id for lesson in L.LESSONS]
    assert len(ids) == len(set(ids)) and len(ids) >= 7
    for lesson in L.LESSONS:
        assert re.fullmatch(r"[a-z0-9-]+", lesson.id), lesson.id  # it becomes an elem_id
        sentences = [s for s in re.split(r"(?<=[.:])\s+(?=[A-Z*])", lesson.look_for) if s.strip()]
        assert 3 <= len(sentences) <= 6, (lesson.id, len(sentences))
        assert lesson.title and lesson.press and re.search(r"\d", lesson.notes), lesson.id
        labels = [label for label, _ in lesson.links()]
        assert len(labels) == len(set(labels)), lesson.id


@pytest.mark.parametrize("lesson,label,query", LINKS, ids=IDS)
def test_a_lesson_link_opens_an_existing_tab_and_model(lesson, label, query):
    assert lesson.tab in TABS
    spec = L.tab_spec(lesson.tab)
    assert query["model"] in spec.models and query["model"] in REGISTRY
    q, run, named, notes = _read(lesson, query)
    assert q["tab"] == lesson.tab and q["model"] == query["model"]
    assert run.model == query["model"]
    assert not notes  # nothing ignored, nothing read under an old name


@pytest.mark.parametrize("lesson,label,query", LINKS, ids=IDS)
def test_every_setting_of_a_lesson_is_applied(lesson, label, query):
    q, run, named, notes = _read(lesson, query)
    for name, want in query.items():
        if name == "model":
            continue
        if name == "dataset":
            got = run.dataset
        elif name == "noise":
            got = run.clamped_noise()
        elif name == "train":
            got = run.train_points
        elif name in ("lr", "batch", "seed"):
            got = getattr(run.settings, name)
        else:
            assert name in run.config, f"{lesson.id}: {name} is not a setting of {run.model}"
            got = run.config[name]
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, (lesson.id, name, got)
        assert L.DATA_NAMES.get(name, name) in named, (lesson.id, name)
    assert run.source == "Built-in"
    assert run == L.parse(lesson.tab, query)[0]  # the link says exactly what the lesson's settings say
    assert run.check() is run


def test_check_refuses_a_lesson_the_tab_would_partly_ignore():
    good = L.LESSONS[0]
    L.check(good)
    bad = [dataclasses.replace(good, query={**good.query, "K": 999}),  # outside its range
           dataclasses.replace(good, query={**good.query, "bogus": 1}),  # not a setting of the model
           dataclasses.replace(good, query={**good.query, "model": "made"}),  # not in this tab
           dataclasses.replace(good, tab="primer"),  # a tab that takes no link
           dataclasses.replace(good, also=(("x", {**good.query, "dataset": "nowhere"}),))]
    for lesson in bad:
        with pytest.raises(ValueError):
            L.check(lesson)


def test_the_cards_carry_every_link():
    from playground.tabs import lessons as tab

    assert TABS[:2] == ["primer", "lessons"] and tab.TITLE == "Lessons"
    for n, lesson in enumerate(L.LESSONS, 1):
        md, links = tab.card_markdown(n, lesson), tab.card_links(lesson)
        hrefs = [html.unescape(h) for h in re.findall(r"href='([^']+)'", links)]
        assert hrefs == [L.link(lesson.tab, query) for _, query in lesson.links()]
        assert lesson.title in md and links.count("→") == len(hrefs)
