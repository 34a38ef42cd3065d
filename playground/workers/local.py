"""Local worker processes: each visitor's run trains in a process of its own, started with the app.

Workers are forked from a *zygote*: ``python -m playground.workers.local --zygote FD``, a fresh interpreter (not
a fork of the web server with its threads and sockets, and no re-import of app.py as multiprocessing's spawn
would do) that imports torch and the models once, then forks a worker whenever the web process asks, handing it
one end of a socket pair. A forked worker shares the zygote's pages until it writes them: torch's own take
~210 MB private per interpreter (its relocations, its compiler stack), which a fork does not repeat, and a
fork is ready in milliseconds where an interpreter takes 1.6 s. Where fork is missing, or the zygote cannot
start, a worker is its own interpreter (``python -m playground.workers.local FD``).

Messages go over the socket with multiprocessing's Connection, as plain pickled bytes (Connection.send's
pickler would pass tensors as shared-memory handles, which only a multiprocessing child may open). A worker
takes one intra-op thread (configure_threads: one core's fair share) and serves one :class:`WorkerCore` until
the web side closes its end; a web process that dies takes its workers with it (their sockets close).

:class:`WorkerPool` keeps SPARE workers started ahead, hands one to each new run, and takes it back when the
run is freed: reused up to MAX_USES times, else ended, so the memory a run used goes back to the system with
its process.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPARE = int(os.environ.get("PLAYGROUND_SPARE_WORKERS", "2"))
MAX_USES = 20  # a worker serves at most this many runs, one after another (then a fresh one: no slow leaks)
START_TIMEOUT = 60.0  # seconds a new worker may take to import torch and say it is ready


class WorkerGone(RuntimeError):
    """The worker's process ended (killed, crashed, out of memory) or cannot be reached."""


def _interpreter(*args: str, fd: int) -> subprocess.Popen:
    """``python -m playground.workers.local ARGS`` with this repository importable and socket `fd` passed on."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-m", "playground.workers.local", *args], pass_fds=(fd,), cwd=str(ROOT),
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)


class ForkedProcess:
    """A worker the zygote forked: not this process's child, so its exit code stays unknown here (a Popen's face:
    poll, wait, kill)."""

    ENDED = "ended"

    def __init__(self, pid: int):
        self.pid = pid
        self._ended = False

    def poll(self):
        if not self._ended:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self._ended = True
            except PermissionError:  # the pid went to someone else's process
                self._ended = True
        return self.ENDED if self._ended else None

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(0.02)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


class Zygote:
    """The web side's end of the zygote: fork() returns a new worker's pid and connection."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        self.proc = _interpreter("--zygote", str(theirs.fileno()), fd=theirs.fileno())
        theirs.close()
        self.sock = ours
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, timeout: float = START_TIMEOUT) -> tuple[int, Connection]:
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                self.sock.settimeout(timeout)  # the first fork waits for the zygote's imports
                socket.send_fds(self.sock, [b"f"], [theirs.fileno()])
                got = b""
                while len(got) < 8:
                    part = self.sock.recv(8 - len(got))
                    if not part:
                        raise OSError("the zygote ended")
                    got += part
        finally:
            theirs.close()
        return struct.unpack("q", got)[0], Connection(ours.detach())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_ZYGOTE: list[Zygote] = []
_ZYGOTE_LOCK = threading.Lock()


def zygote() -> Zygote | None:
    """The zygote (started on first use, again if it died); None where this system cannot fork."""
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds") or os.environ.get("PLAYGROUND_ZYGOTE") == "0":
        return None
    with _ZYGOTE_LOCK:
        if not _ZYGOTE or not _ZYGOTE[0].alive():
            _ZYGOTE[:] = [Zygote()]
        return _ZYGOTE[0]


class ProcessLink:
    """The web side's end of one local worker process (forked by the zygote, else an interpreter of its own)."""

    def __init__(self):
        z = zygote()
        conn = None
        if z is not None:
            try:
                pid, conn = z.fork()
                self.proc = ForkedProcess(pid)
            except OSError:
                conn = None
        if conn is None:
            ours, theirs = socket.socketpair()
            self.proc = _interpreter(str(theirs.fileno()), fd=theirs.fileno())
            theirs.close()
            conn = Connection(ours.detach())
        self.conn = conn
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
        if code == ForkedProcess.ENDED:
            return "its process ended"
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
            try:
                self.proc.wait(0.5)  # the socket closed as the process ended: let it be reaped, to say how
            except subprocess.TimeoutExpired:
                pass
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

    def __init__(self, factory=None, spare: int = SPARE, label: str = "in a worker process of its own"):
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
        if self.closed:
            raise WorkerGone("the server is shutting down")
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
        return f"{self.label} ({self.spare} kept ready)"


def _preload() -> None:
    """What every worker needs, imported (and warmed up) once: in the zygote before it forks, or in a worker that
    is its own interpreter."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the app is the web process's to handle
    from .. import views  # noqa: F401 - frames are drawn from numpy; imported for the forks to share
    from ..session import configure_threads, warm_up
    from . import core  # noqa: F401

    configure_threads()
    warm_up()


def _serve(fd: int) -> None:
    """A worker's life: serve requests until the web side closes its end or says "exit"."""
    from .core import WorkerCore, error_of

    conn = Connection(fd)
    lock = threading.Lock()

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


def _zygote(fd: int) -> None:
    """Import once, then fork a worker for each socket the web process sends; end when the web process does."""
    import gc

    _preload()
    gc.collect()
    gc.freeze()  # what is loaded now stays put: the forks' reference counts do not copy those pages
    sock = socket.socket(fileno=fd)

    def reap(*_):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
        except OSError:
            break
        if not msg or not fds:
            break
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sock.close()
            _serve(fds[0])
        os.close(fds[0])
        try:
            sock.sendall(struct.pack("q", pid))
        except OSError:
            break
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        _zygote(int(sys.argv[2]))
    else:
        _preload()
        _serve(int(sys.argv[1]))
