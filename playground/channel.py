"""The browser sets the pace: a visitor's live area asks for a frame, and only then is one built.

A :class:`FrameChannel` sits between whoever produces frames (the training loop, a button, a changed
view option) and the browser's one outstanding ``pull`` (a long poll from ``assets/live.js``):

* producers :meth:`publish` a *source*: anything with ``render(visible) -> Frame``. Publishing is cheap
  and a newer source simply replaces an older one nobody drew;
* the training loop asks :meth:`wants_frame` (a pull is waiting) before it spends time on a snapshot,
  so a slow browser gets fewer frames and training never waits for it;
* :meth:`pull` waits for a source newer than the last one served, renders it (views + diff + JSON, in
  a worker thread) for the panels the browser can see, and returns one message.

Plain Python (threading + asyncio): no torch, no gradio. A channel is found by its random token, which
only its visitor's page holds; the registry keeps weak references, so a channel lives exactly as long
as the visitor's state that owns it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .frames import FrameEncoder

PULL_TIMEOUT = 10.0  # seconds a pull waits for a new frame before the browser asks again
_CHANNELS: weakref.WeakValueDictionary[str, FrameChannel] = weakref.WeakValueDictionary()


@dataclass
class Frame:
    """What one message shows: figures per panel (only the visible ones are rendered), the status
    line and text blocks as HTML, and whether the run is at rest (the browser then draws everything)."""

    figs: dict[str, dict] = field(default_factory=dict)
    status: str | None = None
    texts: dict[str, str] = field(default_factory=dict)
    final: bool = True


class Source(Protocol):
    def render(self, visible: set[str]) -> Frame: ...


class StaticSource:
    """A frame that is already built (a message, an error, a data preview)."""

    def __init__(self, frame: Frame):
        self.frame = frame

    def render(self, visible: set[str]) -> Frame:
        return Frame({k: v for k, v in self.frame.figs.items() if k in visible}, self.frame.status,
                     self.frame.texts, self.frame.final)


class LiveState:
    """A visitor's state for a live area (a gr.State value): owns the channel their page pulls from,
    made on first use (gradio deep-copies a fresh state, and a channel is not worth copying).

    :meth:`release` frees what the visitor held (a subclass adds its run, its model, its chains); the app
    calls it when the visitor's page closes (:func:`release_visitor`, from demo.unload) and gradio when it
    drops the state (the gr.State's delete_callback, an hour after the page closed)."""

    _channel: FrameChannel | None = None

    @property
    def channel(self) -> FrameChannel:
        if self._channel is None:
            self._channel = FrameChannel()
        return self._channel

    def belongs_to(self, visitor: str | None) -> None:
        """Remember this state as one of `visitor`'s (gradio's session hash), to be released with the others
        when their page closes."""
        if visitor:
            _VISITORS.setdefault(str(visitor), weakref.WeakSet()).add(self)

    def release(self) -> None:
        """Free what this visitor holds: the channel's last frame and its controls (subclasses: more)."""
        ch, self._channel = self._channel, None
        if ch is not None:
            ch.close()


# each visitor's live states, by gradio session hash (weak: a state gradio dropped is gone from here too), so that
# a closed page frees its runs at once rather than when gradio expires its states an hour later
_VISITORS: dict[str, weakref.WeakSet] = {}


def release_visitor(visitor: str | None) -> int:
    """Release every live state of `visitor` (their page closed); returns how many there were."""
    states = list(_VISITORS.pop(str(visitor), ())) if visitor else []
    for st in states:
        st.release()
    return len(states)


def release_state(st: Any) -> None:
    """A gr.State's delete_callback: release the visitor's state when gradio drops it."""
    if isinstance(st, LiveState):
        st.release()


def lookup(token: str) -> FrameChannel | None:
    return _CHANNELS.get(str(token)) if token else None


class FrameChannel:
    def __init__(self):
        self.token = secrets.token_urlsafe(18)
        self.encoder = FrameEncoder()
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._source: Source | None = None
        self._version = 0
        self._served = -1
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.encode_seconds = 0.0  # moving average of the CPU time of rendering + encoding one message
        self.frames_served = 0
        self.bytes_served = 0
        self._poked = False
        self._shown: set[str] = set()  # the panels the last message was rendered for
        # what the page may ask for directly, without a round through gradio's queue ("stop": at once)
        self.controls: dict[str, Callable[..., None]] = {}
        self.last_seen: float | None = None  # when the page last asked for anything (None: no page yet)
        # called when a pull starts waiting (a run training elsewhere hears at once that the page wants a frame)
        self.on_wait: Callable[[], None] | None = None
        _CHANNELS[self.token] = self

    def __deepcopy__(self, memo):  # a copied visitor state gets a channel of its own
        return FrameChannel()

    def close(self) -> None:
        """The visitor is gone: drop the last source (a frame holds a Snapshot) and the page's controls, and
        leave the registry so that no request reaches this channel again."""
        with self._lock:
            self._source = None
        self.controls.clear()
        _CHANNELS.pop(self.token, None)

    # --- producers -------------------------------------------------------------------------------
    def publish(self, source: Source) -> None:
        with self._lock:
            self._source = source
            self._version += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed (server shutting down)
                pass

    def poke(self) -> None:
        """Wake a waiting pull without a new frame (the page's visible panels changed)."""
        with self._lock:
            waiters = list(self._waiters)
            self._poked = True
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass

    def control(self, name: str, value: Any = None) -> bool:
        """Run a control the page asked for ("stop"; "set" with {"key", "value"}); False if none is
        registered under that name."""
        fn = self.controls.get(name)
        if fn is None:
            return False
        fn() if value is None else fn(value)
        return True

    def seen(self) -> None:
        """The page is there (it pulled, or pinged while its tab is hidden)."""
        self.last_seen = time.monotonic()

    def abandoned(self, after: float) -> bool:
        """A page was here and has not asked for anything for `after` seconds: its visitor left (a run
        started from the API, with no page, is never abandoned)."""
        return self.last_seen is not None and not self._waiters and time.monotonic() - self.last_seen > after

    def wants_frame(self) -> bool:
        """A pull is waiting and has nothing newer to take: time to build a frame."""
        return bool(self._waiters) and self._version == self._served

    @property
    def has_source(self) -> bool:
        return self._source is not None

    # --- the browser ---------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return self._source is not None and self._version != self._served

    def _catch_up(self, have: int, visible: set[str], reset: list[str]) -> bool:
        """The browser lacks what the newest frame already shows: a reload or lost message (its `have`
        is not our last message), a panel it re-created, or a panel that came into view since."""
        if self._source is None:
            return False
        return not self.encoder.in_sync(have) or bool(reset) or bool(visible - self._shown)

    async def pull(self, have: int = -1, visible=(), reset=(), timeout: float = PULL_TIMEOUT) -> str | None:
        """The next message for the browser, or None after `timeout` with nothing new (or after a poke)."""
        self.seen()
        visible = {str(v) for v in visible}
        reset = [str(r) for r in reset]
        have = int(have)
        if not self._catch_up(have, visible, reset) and not self._fresh():
            loop = asyncio.get_running_loop()
            event = asyncio.Event()
            with self._lock:
                self._poked = False
                self._waiters.append((loop, event))
            if self.on_wait is not None:
                self.on_wait()
            try:
                await asyncio.wait_for(self._until_fresh(event), timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                with self._lock:
                    self._waiters.remove((loop, event))
                self.seen()
            if not self._fresh():
                return None
        return await asyncio.to_thread(self.render, have, visible, reset)

    async def _until_fresh(self, event: asyncio.Event) -> None:
        while not self._fresh() and not self._poked:
            await event.wait()
            event.clear()

    def render(self, have: int, visible: set[str], reset: list[str]) -> str:
        """Render the newest source for the visible panels and encode it against what the browser holds."""
        with self._encode_lock:
            with self._lock:
                source, version = self._source, self._version
            t0 = time.thread_time()  # CPU time: what rendering takes from the machine, however busy it is
            frame = source.render(visible)
            msg = self.encoder.encode({k: v for k, v in frame.figs.items() if k in visible}, frame.status,
                                      frame.texts, have=have, reset=reset, final=frame.final)
            dt = time.thread_time() - t0
            if not self.encoder.last_full:  # full figures are one-offs: the budget is about the updates
                self.encode_seconds = dt if self.encode_seconds == 0.0 else 0.7 * self.encode_seconds + 0.3 * dt
            self._served = version
            self._shown = set(visible)
            self.frames_served += 1
            self.bytes_served += len(msg)
            return msg
