"""Local worker processes: each visitor's run trains in a process of its own, started with the app.

A worker is ``python -m playground.workers.local FD``: a fresh interpreter (not a fork of the web server with
its threads and sockets, and not a re-import of app.py, as multiprocessing's spawn would do) talking over one
end of a socket pair with multiprocessing's Connection, as plain pickled bytes (Connection.send's pickler
would pass tensors as shared-memory handles, which only a multiprocessing child may open). It imports torch, takes one
intra-op thread (configure_threads: one core's fair share) and serves one :class:`WorkerCore` until the web
side closes its end; a web process that dies takes its workers with it (their socket closes).

:class:`WorkerPool` keeps SPARE workers started ahead (an interpreter with torch takes 1.6 s to start here),
hands one to each new run, and takes it back when the run is freed: reused up to MAX_USES times while fewer
than SPARE wait, else ended, so the memory a run used goes back to the system with its process.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPARE = int(os.environ.get("PLAYGROUND_SPARE_WORKERS", "2"))
MAX_USES = 20  # a worker serves at most this many runs, one after another (then a fresh one: no slow leaks)
START_TIMEOUT = 60.0  # seconds a new worker may take to import torch and say it is ready


class WorkerGone(RuntimeError):
    """The worker's process ended (killed, crashed, out of memory) or cannot be reached."""


class ProcessLink:
    """The web side's end of one local worker process."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                                             if p)}
        self.proc = subprocess.Popen([sys.executable, "-m", "playground.workers.local", str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), cwd=str(ROOT), env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self.uses = 0
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def describe(self) -> str:
        return f"worker process {self.proc.pid}"

    def exit_reason(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "it stopped answering"
        return f"it exited with code {code}" if code >= 0 else f"it was killed by signal {-code}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        if self.ready:
            return
        msg = self.recv(timeout)
        if msg is None or msg.get("kind") != "ready":
            self.close()
            raise WorkerGone(f"a worker process did not start within {timeout:.0f} s")
        self.ready = True

    def send(self, msg: dict) -> None:
        try:
            data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, ValueError) as err:  # the socket closed under us: the worker is gone
            raise WorkerGone(self.exit_reason()) from err

    def recv(self, timeout: float | None = None) -> dict | None:
        """The next message, None after `timeout` seconds without one; WorkerGone when the process has ended."""
        try:
            if timeout is not None and not self.conn.poll(timeout):
                return None
            return pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as err:
            raise WorkerGone(self.exit_reason()) from err

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.conn.closed

    def close(self, timeout: float = 2.0) -> None:
        """End the worker: ask, then insist."""
        try:
            self.send({"op": "exit"})
        except WorkerGone:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        try:
            self.conn.close()
        except OSError:
            pass


class WorkerPool:
    """Workers for the runs: SPARE started ahead, one per run, reused or ended after it.

    Args:
        factory: starts one worker and returns its link (a ProcessLink here; rayactor.RayLink on Ray).
        spare: how many to keep started ahead.
        label: how describe() names where runs train.
    """

    def __init__(self, factory=None, spare: int = SPARE, label: str = "in worker processes of their own"):
        self.factory = factory or ProcessLink
        self.label = label
        self.spare = max(0, int(spare))
        self._idle: list[ProcessLink] = []
        self._lock = threading.Lock()
        self._starting = 0
        self.started = 0  # workers started in all (for the load benchmark)
        self.closed = False

    def _new(self):
        self.started += 1
        return self.factory()

    def fill(self) -> None:
        """Start workers in the background until SPARE are ready or starting."""
        with self._lock:
            need = self.spare - len(self._idle) - self._starting
            self._starting += max(0, need)
        for _ in range(max(0, need)):
            threading.Thread(target=self._start_one, name="playground-worker-start", daemon=True).start()

    def _start_one(self) -> None:
        try:
            link = self._new()
            link.wait_ready()
        except (WorkerGone, OSError, RuntimeError):
            link = None
        with self._lock:
            self._starting -= 1
            if link is not None and not self.closed:
                self._idle.append(link)
                return
        if link is not None:
            link.close()

    def acquire(self):
        """A ready worker for a new run (a spare one at once, else a new one: 1-2 s)."""
        link = None
        with self._lock:
            while self._idle and link is None:
                cand = self._idle.pop(0)
                link = cand if cand.alive() else None
        if link is None:
            link = self._new()
            link.wait_ready()
        link.uses += 1
        self.fill()
        return link

    def give_back(self, link) -> None:
        """A run is over with its worker (its session closed): keep it as a spare, or end it."""
        with self._lock:
            # a warm worker back from a run is kept over a fresh one: up to one beyond SPARE wait (the spare the
            # run's start asked for may be on its way), so that visitors coming and going start no process
            keep = not self.closed and link.alive() and link.uses < MAX_USES and len(self._idle) <= self.spare
            if keep:
                self._idle.append(link)
        if not keep:
            threading.Thread(target=link.close, name="playground-worker-close", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for link in idle:
            link.close(0.5)

    def idle_count(self) -> int:
        return len(self._idle)

    def describe(self) -> str:
        return f"{self.label} ({self.spare} started ahead)"


def _child(fd: int) -> None:
    """A worker's life: serve requests until the web side closes its end or says "exit"."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the app is the web process's to handle
    conn = Connection(fd)
    lock = threading.Lock()

    from ..session import configure_threads, warm_up
    from .core import WorkerCore, error_of

    configure_threads()
    warm_up()

    def emit(msg: dict) -> None:
        try:
            data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        except Exception as err:  # noqa: BLE001 - a value that cannot be pickled: say so instead
            if msg.get("kind") != "reply":
                return
            data = pickle.dumps({"kind": "reply", "id": msg.get("id"), "error": error_of(err), "state": {}})
        with lock:
            try:
                conn.send_bytes(data)
            except (OSError, ValueError):  # the web side is gone
                os._exit(0)

    core = WorkerCore(emit)
    emit({"kind": "ready", "pid": os.getpid()})
    while True:
        try:
            msg = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break
        if msg.get("op") == "exit":
            break
        core.handle(msg)
    core.op_close()
    os._exit(0)  # no interpreter teardown with a run's thread possibly inside torch (see session.run.stop_all)


if __name__ == "__main__":
    _child(int(sys.argv[1]))
