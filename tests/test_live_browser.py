"""The live pipeline as a user meets it in headless Chromium: Stop acts at once on every tab, a zoom holds
while frames arrive, and frames after the first carry what changed, not the static layers."""

import json
import time
import weakref

import pytest
from live_helpers import SLOW, box_zoom, click, panel, status, step_of, wait_frames, wait_moves, wait_panel, wait_status

pytestmark = pytest.mark.browser

TABS = ["autoregressive", "latent", "flows", "gans", "ebm"]


def open_tab(page, url, key):
    page.set_default_timeout(SLOW)
    page.goto(f"{url}/?tab={key}")
    wait_panel(page, f"{key}-plot-main", "p.frames >= 1")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
@pytest.mark.parametrize("key", TABS)
def test_stop_mid_run_stops_training_and_the_page_says_so(page, app_url, artifacts, key):
    open_tab(page, app_url, key)
    click(page, f"#{key}-train")
    wait_status(page, key, "running")
    wait_moves(page, f"{key}-plot-main", 3)  # mid-run: the step moved a few times
    click(page, f"#{key}-stop")
    wait_status(page, key, "stopped")
    # the page is told at once; the final frame (full grid, fresh held-out metrics) follows as soon as it is
    # built, which on a loaded machine can take seconds: wait until the panel has settled
    frames, deadline = -1, time.monotonic() + 30
    while time.monotonic() < deadline:
        now = panel(page, f"{key}-plot-main")["frames"]
        if now == frames:
            break
        frames = now
        time.sleep(1.0)
    first = step_of(status(page, key))
    time.sleep(2.0)
    assert first > 0 and step_of(status(page, key)) == first, status(page, key)  # training really stopped
    assert panel(page, f"{key}-plot-main")["frames"] == frames  # and nothing more is drawn
    assert "running" not in status(page, key)
    page.screenshot(path=str(artifacts / f"stopped-{key}.png"))


def test_zoom_holds_while_frames_arrive(page, app_url, artifacts):
    open_tab(page, app_url, "flows")
    click(page, "#flows-train")
    wait_status(page, "flows", "running")
    wait_frames(page, "flows-plot-main", 2)
    full = panel(page, "flows-plot-main")["xrange"]
    box_zoom(page, "flows-plot-main", 0.25, 0.6)
    zoomed = panel(page, "flows-plot-main")["xrange"]
    assert zoomed[1] - zoomed[0] < 0.6 * (full[1] - full[0]), (full, zoomed)  # the box zoom took effect
    before = panel(page, "flows-plot-main")
    wait_frames(page, "flows-plot-main", 4)
    after = panel(page, "flows-plot-main")
    page.screenshot(path=str(artifacts / "flows-zoomed.png"))
    click(page, "#flows-stop")
    assert after["xrange"] == pytest.approx(zoomed)  # frames came and the zoom stayed
    assert after["zsum"] != before["zsum"]  # and the density went on changing under it
    assert after["title"] != before["title"]


def test_updates_carry_the_density_not_the_static_layers(page, app_url):
    """Record the messages the page applies while RealNVP trains: the main panel's full figure comes once;
    after it, the density layer changes in every update and the training data never travels again."""
    open_tab(page, app_url, "flows")
    page.evaluate("""() => { window.__msgs = []; const A = PGLive.Area.prototype, paint = A.paint;
        A.paint = function (msg, bytes) { if (this.cfg.area === 'flows') window.__msgs.push(JSON.stringify(msg));
                                          return paint.call(this, msg, bytes); }; }""")
    click(page, "#flows-train")
    wait_status(page, "flows", "running")
    wait_frames(page, "flows-plot-main", 5)
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")
    msgs = [json.loads(m) for m in page.evaluate("() => window.__msgs")]
    main = [(m["panels"]["main"], len(json.dumps(m["panels"]["main"]))) for m in msgs if "main" in m["panels"]]
    fulls = [i for i, (m, _) in enumerate(main) if "full" in m]
    assert fulls, "the main panel never got its figure"
    full = main[fulls[-1]]  # the run's figure (earlier ones: the data preview)
    layers = full[0]["full"]["canvas"]
    density = next(i for i, lay in enumerate(layers) if lay["type"] == "heatmap")
    data = next(i for i, lay in enumerate(layers) if lay.get("name") == "training data")
    updates = main[fulls[-1] + 1:]
    assert len(updates) >= 3
    assert all(str(data) not in m.get("canvas", {}) for m, _ in updates)  # never re-sent
    assert sum(str(density) in m.get("canvas", {}) for m, _ in updates) >= len(updates) - 1  # the density moves
    live = sorted(n for _, n in updates[:-1])  # the last one, at rest, brings the full-resolution density
    assert live[len(live) // 2] < full[1] / 2  # an update is a fraction of the figure


def _new_since(before: list) -> list:
    """The live sessions that are not among `before` (weak references: a session gone since then may have left its
    id() to a new one, so ids would not do)."""
    old = [r() for r in before]
    return [s for s in _live_sessions() if not any(s is o for o in old)]


def _live_sessions() -> list:
    import gc

    from playground.session import Session
    from playground.workers.remote import RemoteSession

    gc.collect()
    return [o for o in gc.get_objects() if type(o) in (Session, RemoteSession)]


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_a_closed_page_frees_its_run_at_once(browser, app_url):
    """A visitor who closes the page while training: the app stops the run and lets go of the session, its
    model and its frames when the page goes (demo.unload), not when gradio drops their state an hour later."""
    before = [weakref.ref(s) for s in _live_sessions()]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_tab(page, app_url, "flows")
    click(page, "#flows-train")
    wait_status(page, "flows", "running")
    wait_moves(page, "flows-plot-main", 2)
    ours = [weakref.ref(s) for s in _new_since(before) if s.status == "running"]
    assert len(ours) == 1, "the page's run is not among the server's sessions"
    link = getattr(ours[0](), "link", None)  # its worker process (the app's default)
    page.close()
    deadline = time.monotonic() + 20
    while ours[0]() is not None and time.monotonic() < deadline:
        time.sleep(0.5)
        _live_sessions()  # a collection
    assert ours[0]() is None, "the closed page's session is still held"
    if link is not None:  # its worker is back in the pool, holding no run, or has ended
        from playground import workers

        pool = workers.backend()
        assert link in pool._idle or link.proc.wait(5) is not None
        if link in pool._idle:
            assert link.send({"op": "ping", "id": -1}) is None and link.recv(5)["state"] == {}


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_a_worker_killed_mid_run_is_a_message_and_train_goes_on_from_its_checkpoint(page, app_url, artifacts):
    """The worker process training a page's run dies (the OS killed it): the page says so, shows the step it went
    back to, and Train goes on from there in a new worker; never a hung page."""
    import os
    import signal

    before = [weakref.ref(s) for s in _live_sessions()]
    open_tab(page, app_url, "flows")
    click(page, "#flows-train")
    wait_status(page, "flows", "running")
    wait_moves(page, "flows-plot-main", 2)
    ours = [s for s in _new_since(before) if s.status == "running"]
    assert len(ours) == 1 and getattr(ours[0], "link", None) is not None, "the page's run is not in a worker"
    sess = ours[0]
    deadline = time.monotonic() + 30
    while sess._blob is None and time.monotonic() < deadline:  # its first checkpoint reaches the web process
        time.sleep(0.2)
    saved = sess._blob["slot"]["step"]
    old_pid = sess.link.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_status(page, "flows", "a new one took over")
    text = status(page, "flows")
    assert "stopped" in text and f"checkpoint of step {saved:,}" in text and step_of(text) == saved, text
    page.screenshot(path=str(artifacts / "worker-killed.png"))
    click(page, "#flows-train")
    wait_status(page, "flows", "running")
    wait_moves(page, "flows-plot-main", 2)
    assert step_of(status(page, "flows")) > saved and sess.link.pid != old_pid
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")


@pytest.mark.slow  # over 10 s here (python -m pytest --durations)
def test_a_visitor_beyond_the_training_slots_is_told_and_can_stop_waiting(page, app_url, monkeypatch):
    """With every training slot taken (four API visitors training), Train on a page says that the run waits
    for a slot, and how many train; Stop while waiting says it will not start, and once the slots are free
    Train starts at once."""
    from gradio_client import Client
    from test_app import info, latent_args

    from playground import tabkit, visitors

    monkeypatch.setattr(tabkit, "MAX_RUN_SECONDS", 120.0)  # the app fixture's 20 s could free a slot mid-test
    open_tab(page, app_url, "flows")
    clients = [Client(app_url, verbose=False) for _ in range(visitors.TRAIN_CONCURRENCY)]
    jobs = [c.submit(*latent_args(c, lr=-3.0, method="gradient"), api_name="/latent_train") for c in clients]
    try:
        for job in jobs:  # every slot is training (for up to MAX_RUN_SECONDS: raised for this test below)
            next(iter(job))
        assert visitors.SLOTS.active >= visitors.TRAIN_CONCURRENCY
        click(page, "#flows-train")
        wait_status(page, "flows", "waiting for a training slot")
        assert f"{visitors.TRAIN_CONCURRENCY} runs train at once" in status(page, "flows")
        click(page, "#flows-stop")
        wait_status(page, "flows", "stopped before it started")
    finally:
        for c in clients:
            c.predict(api_name="/latent_stop")
    for job in jobs:
        assert info(job.result())["status"] == "stopped"
    time.sleep(1.0)
    assert visitors.SLOTS.active == 0 and visitors.SLOTS.waiting == 0
    click(page, "#flows-train")  # the skipped wait is gone: this one trains
    wait_status(page, "flows", "running")
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")
