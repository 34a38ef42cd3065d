"""The page sets the pace (playground/channel.py, Session.run): a frame is built only when the page waits
for one, a newer frame replaces an older one nobody drew, and a run nobody watches builds none."""

import asyncio
import json
import threading
import time

from models import TrainSettings
from playground import plots
from playground.channel import Frame, FrameChannel, StaticSource, lookup
from playground.datasets import make_split
from playground.session import Session


def _frame(text: str, final: bool = False) -> StaticSource:
    return StaticSource(Frame({"main": plots.message_figure(text)}, text, final=final))


def _run(coro):
    """Run a coroutine on a loop of its own, on a thread of its own: the browser tests' Playwright keeps an
    event loop running on the main thread, where asyncio.run would refuse."""
    out: dict = {}

    def go():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
            out["error"] = e

    t = threading.Thread(target=go)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _pull(ch: FrameChannel, have: int, timeout: float = 2.0, visible=("main",)):
    msg = _run(ch.pull(have, list(visible), [], timeout=timeout))
    return None if msg is None else json.loads(msg)


def test_a_pull_waits_for_a_frame_and_only_then_is_one_wanted():
    ch = FrameChannel()
    assert lookup(ch.token) is ch and lookup("nope") is None
    ch.publish(_frame("first"))
    first = _pull(ch, 0)
    assert first["status"] == "first" and "full" in first["panels"]["main"]
    assert not ch.wants_frame()  # nobody is waiting

    wanted = []

    def producer():
        deadline = time.time() + 2
        while time.time() < deadline and not ch.wants_frame():
            time.sleep(0.005)
        wanted.append(ch.wants_frame())
        ch.publish(_frame("second"))

    threading.Thread(target=producer).start()
    second = _pull(ch, first["seq"])
    assert wanted == [True] and second["status"] == "second"
    assert "full" not in second["panels"]["main"]  # the page holds the figure: an update


def test_a_newer_frame_replaces_one_nobody_drew_and_a_stale_page_gets_full_figures():
    ch = FrameChannel()
    ch.publish(_frame("a"))
    a = _pull(ch, 0)
    for text in ("b", "c", "d"):
        ch.publish(_frame(text))
    d = _pull(ch, a["seq"])
    assert d["status"] == "d" and d["seq"] == a["seq"] + 1  # b and c were never encoded
    assert _pull(ch, d["seq"], timeout=0.2) is None  # nothing new: the long poll times out
    again = _pull(ch, a["seq"])  # a page that missed d (a reload) gets the newest frame in full at once
    assert again["status"] == "d" and "full" in again["panels"]["main"]


def test_a_panel_coming_into_view_is_served_at_once():
    ch = FrameChannel()
    ch.publish(StaticSource(Frame({"main": plots.message_figure("m"), "curves": plots.message_figure("c")}, "s")))
    first = _pull(ch, 0, visible=("main",))
    assert list(first["panels"]) == ["main"]
    t0 = time.perf_counter()
    more = _pull(ch, first["seq"], visible=("main", "curves"))
    assert time.perf_counter() - t0 < 1.0 and list(more["panels"]) == ["curves"]


def test_a_page_that_stopped_asking_abandons_its_run():
    ch = FrameChannel()
    assert not ch.abandoned(0.0)  # no page yet (an API client): never abandoned
    ch.publish(_frame("x"))
    _pull(ch, 0)
    assert not ch.abandoned(5.0)
    time.sleep(0.05)
    assert ch.abandoned(0.01)


def test_frames_are_built_only_when_wanted_and_within_the_budget():
    data = make_split("8gaussians", 600, seed=0)
    sess = Session("mog", None, data, TrainSettings.make(lr=0.01, batch=256), device="cpu", grid_res=40)
    frames = [s for s in sess.run(max_steps=300, want_frame=lambda: False) if s is not None]
    assert len(frames) == 1 and frames[0].status == "done"  # only the final one: nobody watched
    sess = Session("mog", None, data, TrainSettings.make(lr=0.01, batch=256), device="cpu", grid_res=40)
    t0 = time.perf_counter()
    frames = [s for s in sess.run(max_seconds=1.5, frame_cost=lambda: 0.02) if s is not None]
    elapsed = time.perf_counter() - t0
    # each frame is charged 20 ms more than it costs: at a 10% share frames stay >= 200 ms apart
    assert 2 <= len(frames) <= elapsed / 0.2 + 2, len(frames)
    steps = [f.step for f in frames]
    assert steps == sorted(steps) and steps[0] == 0  # the first frame before the first step


def test_a_visitor_who_leaves_is_released_with_all_their_states():
    """release_visitor (the app's demo.unload) releases every live state a visitor's page registered, and
    only theirs; a released tab state has stopped its run and let go of the session and its frames."""
    from playground.channel import LiveState, release_state, release_visitor
    from playground.tabkit import TabState

    mine, theirs = TabState(), LiveState()
    mine.session = Session("mog", None, make_split("moons", 300, seed=0), device="cpu")
    run = mine.session.run()
    next(run)  # parked at its first frame, as a page that closed mid-run leaves it
    session, token = mine.session, mine.channel.token
    mine.channel.publish(StaticSource(Frame({}, "a frame")))
    mine.belongs_to("visitor-a")
    theirs.belongs_to("visitor-b")
    other_token = theirs.channel.token
    assert release_visitor("visitor-a") == 1
    assert mine.session is None and session.status == "stopped"
    assert lookup(token) is None and lookup(other_token) is theirs.channel
    assert release_visitor("visitor-a") == 0  # once
    release_state(theirs)  # gradio's delete_callback, an hour later
    assert lookup(other_token) is None
    run.close()


def test_idle_runs_are_freed_and_running_or_recent_ones_kept():
    """release_idle (the app's reaper) frees a run nobody trained or used for the idle time, never one that is
    running or was just used; the visitor's next new run says why it is new."""
    from playground import tabkit, visitors

    data = make_split("moons", 300, seed=0)
    idle, busy, recent = tabkit.TabState(), tabkit.TabState(), tabkit.TabState()
    for st in (idle, busy, recent):
        st.session = Session("mog", None, data, device="cpu")
        st.session.train_steps(2)
    run = busy.session.run()
    next(run)  # training (parked at a frame)
    now = time.monotonic()
    idle.last_active = busy.last_active = now - 100
    recent.last_active = now - 5
    assert visitors.release_idle(idle=60, now=now) == 1
    assert idle.session is None and "freed" in idle.freed_note
    assert busy.session is not None and recent.session is not None
    run.close()


def test_a_waiting_visitor_is_told_when_they_start_at_the_latest():
    """The slots free in the order their runs reach the longest a run may last; each visitor ahead takes the next
    one, and may hold it that long."""
    import types

    from playground.visitors import TrainSlots

    slots = TrainSlots(2)
    a, b = types.SimpleNamespace(waiting=False), types.SimpleNamespace(waiting=False)
    assert slots.latest_start(0, 900) is None  # nobody trains: nothing to wait for
    slots.start(a)
    slots.start(b)
    now = time.monotonic()
    slots._started = {id(a): now - 800, id(b): now - 100}  # a has trained 800 s, b 100 s
    assert [round(slots.latest_start(k, 900, now)) for k in range(4)] == [100, 800, 1000, 1700]
    slots.end(a)
    assert round(slots.latest_start(0, 900, now)) == 800 and slots.active == 1


def test_a_run_frame_from_before_an_action_is_not_shown():
    """↩ Early stop (or Step, or Reset) replaces what a run shows; the stopping run's own last frame, which can
    arrive after the action's under load, is stale and dropped (it showed 'stopped' at the step before early
    stopping went back)."""
    from playground.tabkit import FamilyTab, TabState

    st, tab = TabState(), object.__new__(FamilyTab)
    run_epoch = st.epoch  # what a run takes as it starts
    FamilyTab.publish(tab, st, "run frame", "", epoch=run_epoch)
    assert st.last == "run frame"
    FamilyTab.supersede(tab, st)
    FamilyTab.publish(tab, st, "back at the best step", "early stopping")
    FamilyTab.publish(tab, st, "the run's last frame", "stopped: press Train to resume", epoch=run_epoch)
    assert (st.last, st.note) == ("back at the best step", "early stopping")
    FamilyTab.publish(tab, st, "a new run's frame", "", epoch=st.epoch)  # a run started after it is shown
    assert st.last == "a new run's frame"
