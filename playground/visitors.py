"""The server's visitors as a whole: the training slots they share, and freeing what their idle runs hold.

Gradio's queue lets TRAIN_CONCURRENCY runs train at once (every tab's Train shares concurrency_id "train");
:class:`TrainSlots` counts them so that a visitor whose run must wait is told so. :func:`release_idle` frees the
runs nobody trained or used for IDLE_SECONDS (an API visitor never closes a page; a page that closes is released
at once by the app's demo.unload), :func:`park_idle` frees the workers of runs idle PARK_SECONDS (keeping their
state), and :func:`start_reaper` calls both in the background. Process-wide counters and
weak references only: every visitor's own state stays in their gr.State (tabkit.TabState).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tabkit import TabState

# runs that train at once: two per core by default (each run in a worker of its own: a core serves two at about 0.4
# of their speed alone, bench load), so a bigger machine serves more visitors; on a Ray cluster set it to the
# cluster's size
TRAIN_CONCURRENCY = int(os.environ.get("PLAYGROUND_CONCURRENCY") or max(2, 2 * (os.cpu_count() or 1)))
# a visitor's run that has not trained nor been touched this long is freed (its model, data and frames): a page
# that closes is released at once (demo.unload), but an API client never says it has gone
IDLE_SECONDS = float(os.environ.get("PLAYGROUND_IDLE_SECONDS", "1800"))
# a run that has not trained nor been touched this long gives its worker back and keeps only its state (a few
# hundred KB); its next use takes a worker from the pool and goes on where it was (RemoteSession.park)
PARK_SECONDS = float(os.environ.get("PLAYGROUND_PARK_SECONDS", "120"))


class TrainSlots:
    """The server's training slots: gradio's queue lets TRAIN_CONCURRENCY runs train at once (every tab's Train
    shares concurrency_id "train") and holds the rest. This counts them, so that a visitor whose run must wait
    is told so, and how many are ahead, instead of seeing nothing happen."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.active = 0
        self.waiting = 0
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}  # id(state) -> when its run took a slot

    def queue(self, st: TabState) -> int | None:
        """A Train was pressed: None when a slot is free, else how many visitors wait before this one."""
        with self._lock:
            if self.active < self.limit or st.waiting:
                return None
            st.waiting = True
            self.waiting += 1
            return self.waiting - 1

    def leave_queue(self, st: TabState) -> bool:
        """The visitor's wait ends (its run starts, or it pressed Stop or Reset first); True if it was waiting."""
        with self._lock:
            if not st.waiting:
                return False
            st.waiting = False
            self.waiting = max(0, self.waiting - 1)
            return True

    def start(self, st: TabState) -> None:
        self.leave_queue(st)
        with self._lock:
            self.active += 1
            self._started[id(st)] = time.monotonic()

    def end(self, st: TabState | None = None) -> None:
        with self._lock:
            self.active = max(0, self.active - 1)
            self._started.pop(id(st), None)

    def latest_start(self, ahead: int, max_run: float, now: float | None = None) -> float | None:
        """At the latest how many seconds until a visitor with `ahead` others before them starts (every run ends
        after `max_run` seconds at most; a visitor who stops ends theirs sooner); None when no run is timed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            left = sorted(max(0.0, max_run - (now - t)) for t in self._started.values())
        if not left:
            return None
        # the slots free in the order `left`; each visitor ahead takes one and may hold it max_run seconds
        rounds, k = divmod(int(ahead), len(left))
        return left[k] + rounds * max_run


SLOTS = TrainSlots(TRAIN_CONCURRENCY)


_STATES: weakref.WeakSet = weakref.WeakSet()  # every visitor's tab state (weak: gradio owns them), for release_idle


def release_idle(idle: float | None = None, now: float | None = None) -> int:
    """Free the runs that neither trained nor were used for `idle` seconds (default IDLE_SECONDS): their session,
    model and data; the visitor's next Train starts a new run and says why. Returns how many were freed."""
    idle = IDLE_SECONDS if idle is None else idle
    now = time.monotonic() if now is None else now
    freed = 0
    for st in list(_STATES):
        sess = st.session
        if sess is not None and sess.status != "running" and now - st.last_active > idle:
            st.free_session()
            st.freed_note = f"your earlier run sat idle over {idle / 60:.0f} min and was freed: this is a new run"
            freed += 1
    return freed


def park_idle(after: float | None = None, now: float | None = None) -> int:
    """Free the workers of runs that sat idle `after` seconds (default PARK_SECONDS), keeping their state; returns
    how many were parked."""
    after = PARK_SECONDS if after is None else after
    now = time.monotonic() if now is None else now
    parked = 0
    for st in list(_STATES):
        sess = st.session
        if sess is not None and hasattr(sess, "park") and not sess.parked and sess.status != "running" \
                and now - st.last_active > after:
            parked += bool(sess.park())
    return parked


_REAPER: list[threading.Thread] = []


def start_reaper(every: float | None = None) -> threading.Thread:
    """A daemon thread calling park_idle and release_idle every `every` seconds (default: a quarter of the shorter of
    PARK_SECONDS and IDLE_SECONDS, between 1 and 30); one per process (the app starts it)."""
    if _REAPER and _REAPER[0].is_alive():
        return _REAPER[0]
    every = min(30.0, max(1.0, min(PARK_SECONDS, IDLE_SECONDS) / 4)) if every is None else every

    def loop():
        while True:
            time.sleep(every)
            try:
                park_idle()
                release_idle()
            except Exception as err:  # noqa: BLE001 - the reaper must outlive one bad run
                print(f"playground: freeing idle runs failed: {err}")
    t = threading.Thread(target=loop, name="playground-idle-reaper", daemon=True)
    t.start()
    _REAPER[:] = [t]
    return t
