"""Runs in workers of their own (playground/workers): a local worker process per run, or a Ray actor.

What a visitor relies on: the run in a worker is the run the web process would have made (same seed, same
parameters, bit for bit), with company or alone; Stop answers at once; a worker that dies comes back from its
last checkpoint with a message; a freed run gives its worker back; Ray actors behave the same.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from models import ConfigError, TrainSettings
from playground import workers
from playground.datasets import make_split
from playground.session import Session
from playground.workers.local import WorkerPool
from playground.workers.remote import RemoteSession

DATA = make_split("8gaussians", 600, seed=0)


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(spare=1)
    p.fill()
    yield p
    p.close()


def params_after(sess, steps: int) -> dict[str, torch.Tensor]:
    for _ in sess.run(max_steps=steps, frames=False):
        pass
    state = sess.export_state() if isinstance(sess, RemoteSession) else _local_export(sess)
    return state["slot"]["state"]


def _local_export(sess: Session) -> dict:
    sess._checkpoint()
    return sess.export_state()


@pytest.mark.parametrize("key", ["realnvp", "gan_ns", "ebm_cd", "vae"])
def test_a_run_in_a_worker_process_is_the_run_of_the_web_process_bit_for_bit(pool, key):
    settings = TrainSettings(seed=3, batch=64)
    local = params_after(Session(key, None, DATA, settings), 30)
    remote = RemoteSession(pool, key, None, DATA, settings)
    try:
        far = params_after(remote, 30)
        assert remote.step_count == 30 and remote.status == "done"
    finally:
        remote.close()
    assert local.keys() == far.keys()
    for name in local:
        assert torch.equal(local[name], far[name]), name


def test_two_runs_at_once_with_one_seed_are_the_same_run(pool):
    """Company changes nothing: two workers training at the same time, same seed, same parameters."""
    settings = TrainSettings(seed=7, batch=64)
    a, b = (RemoteSession(pool, "realnvp", None, DATA, settings) for _ in range(2))
    try:
        out = {}
        threads = [threading.Thread(target=lambda s=s, k=k: out.__setitem__(k, params_after(s, 40)))
                   for k, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(out) == {"a", "b"}
        assert all(torch.equal(out["a"][n], out["b"][n]) for n in out["a"])
        assert a.link.pid != b.link.pid  # they did train in two processes
    finally:
        a.close()
        b.close()


def test_frames_come_when_the_page_wants_them_and_stop_answers_at_once(pool):
    sess = RemoteSession(pool, "realnvp", None, DATA, TrainSettings(seed=0))
    try:
        wants = {"n": 0}

        def want():  # a page that wants three frames, then none
            return wants["n"] < 3

        stopped = {}

        def stopper():
            while wants["n"] < 3:
                time.sleep(0.01)
            time.sleep(0.3)
            t0 = time.perf_counter()
            sess.request_stop()
            stopped["left"] = sess.wait_left(2.0)
            stopped["seconds"] = time.perf_counter() - t0
            stopped["step"] = sess.step_count

        threading.Thread(target=stopper).start()
        snaps = []
        for snap in sess.run(max_seconds=20, want_frame=want):
            snaps.append(snap)
            wants["n"] += 1
        assert len(snaps) == 4  # three asked for, and the final one
        assert snaps[0].step == 0  # the first frame comes before the first step
        assert snaps[-1].status == "stopped" and stopped["left"]
        assert snaps[-1].step >= stopped["step"] > snaps[2].step  # it trained on between frames
        assert stopped["seconds"] < 1.0
    finally:
        sess.close()


def test_a_bad_setting_is_the_same_one_line_error_and_the_worker_goes_back(pool):
    started = pool.started
    with pytest.raises(ConfigError):
        RemoteSession(pool, "realnvp", {"layers": 10_000}, DATA)
    sess = RemoteSession(pool, "realnvp", None, DATA)  # the worker is there for the next run
    sess.close()
    assert pool.started - started <= 2


def test_a_killed_worker_is_replaced_and_the_run_goes_on_from_its_checkpoint(pool):
    sess = RemoteSession(pool, "realnvp", None, DATA, TrainSettings(seed=0))
    try:
        for _ in sess.run(max_steps=50, frames=False):
            pass
        assert sess._blob is not None and sess._blob["slot"]["step"] == 50
        old = sess.link.pid
        killer = threading.Timer(0.5, sess.kill_worker)
        killer.start()
        snaps = list(sess.run(max_seconds=30, want_frame=lambda: False))
        assert snaps and snaps[-1].event == "restarted" and snaps[-1].status == "stopped"
        assert "step 50" in snaps[-1].message and "stopped" in snaps[-1].message
        assert sess.link.pid != old and sess.step_count == 50  # a new worker, at the checkpoint
        for _ in sess.run(max_steps=5, frames=False):
            pass
        assert sess.step_count == 55 and sess.status == "done"
    finally:
        sess.close()


def test_an_idle_run_gives_its_worker_back_and_goes_on_exactly_where_it_was(pool):
    """Parked (its worker freed while it sat idle), a run keeps its state here and goes on bit for bit."""
    settings = TrainSettings(seed=5, batch=64)
    straight = params_after(Session("gan_ns", None, DATA, settings), 60)
    sess = RemoteSession(pool, "gan_ns", None, DATA, settings)
    try:
        params_after(sess, 30)
        link = sess.link
        assert sess.park() and sess.parked and sess.link is None
        assert link in pool._idle or not link.alive()  # the worker is the pool's again
        assert sess.status == "done" and sess.step_count == 30  # what the page shows stays
        again = params_after(sess, 30)  # the next use takes a worker and goes on
        assert not sess.parked and sess.step_count == 60
        assert all(torch.equal(straight[n], again[n]) for n in straight)
    finally:
        sess.close()


def test_the_reaper_parks_runs_idle_too_long_and_keeps_busy_ones(pool, monkeypatch):
    from playground import tabkit, visitors

    idle, busy = tabkit.TabState(), tabkit.TabState()
    idle.session = RemoteSession(pool, "mog", None, DATA)
    busy.session = RemoteSession(pool, "mog", None, DATA)
    try:
        now = time.monotonic()
        idle.last_active = now - 500
        busy.last_active = now - 5
        assert visitors.park_idle(after=120, now=now) >= 1  # (the app's other visitors may be parked too)
        assert idle.session.parked and not busy.session.parked
    finally:
        idle.release()
        busy.release()


def test_closed_runs_give_their_workers_back(pool):
    """Opening and closing runs one after another starts no worker beyond the pool's spare ones, and leaves no
    process behind."""
    first = RemoteSession(pool, "mog", None, DATA)
    first.close()
    started = pool.started
    pids = set()
    for _ in range(5):
        s = RemoteSession(pool, "mog", None, DATA)
        pids.add(s.link.pid)
        for _ in s.run(max_steps=3, frames=False):
            pass
        s.close()
    assert pool.started - started <= 1 and len(pids) <= pool.spare + 1
    assert pool.idle_count() <= pool.spare + 1


def test_a_run_dropped_without_a_goodbye_gives_its_worker_back(pool):
    """A run nobody holds any more (a visitor state gradio dropped without calling us) is collected, and its
    worker goes back to the pool holding no run: the reader thread does not keep it alive."""
    import gc
    import weakref

    sess = RemoteSession(pool, "mog", None, DATA)
    for _ in sess.run(max_steps=3, frames=False):
        pass
    link, ref = sess.link, weakref.ref(sess)
    del sess
    gc.collect()
    assert ref() is None
    deadline = time.monotonic() + 5
    while link not in pool._idle and link.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link in pool._idle or not link.alive()
    if link in pool._idle:
        got = RemoteSession(pool, "mog", None, DATA)  # it serves the next run
        got.close()


def test_the_tabs_open_runs_in_the_configured_mode():
    assert workers.mode() in workers.MODES
    with pytest.raises(ValueError):
        workers.configure("nowhere")


# --- Ray ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_backend():
    pytest.importorskip("ray")
    from playground.workers.rayactor import RayBackend

    backend = RayBackend("local", spare=1)
    backend.fill()
    yield backend
    backend.close()
    import ray

    ray.shutdown()


@pytest.mark.slow  # Ray starts: over 10 s here
def test_a_run_as_a_ray_actor_is_the_same_run_and_survives_its_actor_dying(ray_backend):
    settings = TrainSettings(seed=3, batch=64)
    local = params_after(Session("realnvp", None, DATA, settings), 30)
    sess = RemoteSession(ray_backend, "realnvp", None, DATA, settings)
    try:
        far = params_after(sess, 30)
        assert all(torch.equal(local[n], far[n]) for n in local)
        snaps = list(sess.run(max_steps=200, want_frame=lambda: True))
        assert snaps[0].log_density is not None and snaps[-1].status == "done" and sess.step_count == 230
        snaps[-1].samples[0, 0] = 0.0  # arrays arrive writable
        pid = sess.link.pid
        threading.Timer(0.5, sess.kill_worker).start()
        snaps = list(sess.run(max_seconds=30, want_frame=lambda: False))
        assert snaps[-1].event == "restarted" and "230" in snaps[-1].message
        assert sess.link.pid != pid and sess.step_count == 230
    finally:
        sess.close()
    assert os.environ.get("PLAYGROUND_WORKERS", "process") in workers.MODES


@pytest.mark.slow  # Ray and a second app start: over 10 s here
def test_the_app_on_ray_trains_a_visitor_as_an_actor(ray_backend):
    """`python app.py --ray local`, as an API visitor sees it: Train runs in a Ray actor (not in the web process),
    reports progress, and Stop ends it with held-out metrics."""
    from conftest import free_port
    from gradio_client import Client
    from test_app import info, latent_args

    import app as app_module
    from playground.workers.remote import RemoteSession as Remote

    before = workers.mode()
    workers.configure("ray")
    demo = None
    try:
        demo = app_module.build_app()
        assert isinstance(workers.backend(), type(ray_backend))
        kw = app_module.launch_kwargs()
        kw.update(server_port=free_port(), server_name="127.0.0.1")
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kw)
        client = Client(url, verbose=False)
        job = client.submit(*latent_args(client, lr=-3.0, method="gradient"), api_name="/latent_train")
        seen = []
        for out in job:
            seen.append(info(out))
            if len(seen) >= 3:
                import gc

                runs = [o for o in gc.get_objects() if type(o) is Remote and o.status == "running"]
                assert len(runs) == 1 and "Ray actor" in runs[0].link.describe()
                client.predict(api_name="/latent_stop")
                break
        final = info(job.result())
        assert [s["status"] for s in seen] == ["running"] * 3 and seen[-1]["step"] > seen[0]["step"]
        assert final["status"] == "stopped" and "test_nll" in final["latest"]
    finally:
        if demo is not None:
            demo.close()
        workers.configure(before)


def test_a_run_that_cannot_get_a_worker_is_one_line_in_the_tab(app_url):
    """No worker to be had (here: the pool is shutting down): Train answers with the reason, no traceback."""
    from gradio_client import Client
    from test_app import info, latent_args

    pool = workers.backend()
    client = Client(app_url, verbose=False)
    pool.closed = True
    try:
        out = info(client.predict(*latent_args(client, seed=11), api_name="/latent_train"))
    finally:
        pool.closed = False
    assert "shutting down" in out["error"] and "Traceback" not in out["error"]
