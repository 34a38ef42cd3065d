"""`python -m playground bench load`: a class at once. N simulated visitors train at the same time through the app's
own API (gradio_client, one client each: its own session), on the four tabs in turn (MoG, Real NVP, GAN, EBM-CD),
against `python app.py` in its own process.

Reported per visitor: steps/s while training (from the progress an API client gets once a second), the wait
before its first progress (queued behind others, with or without a word), and how long Stop takes to answer;
for the server: the CPU cores it used over the run (user + system time over the wall time), of the web process and
of its worker processes apart, how many workers there were, and the memory before and after (resident set) of the
web process and of everything (web + workers). API visitors have no page, so the app builds them no frames: the
frames a page gets are `bench browser`'s. Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

from .benchweb import App, BenchError

VISITS = (("latent", "mog"), ("flows", "realnvp"), ("gans", "gan_ns"), ("ebm", "ebm_cd"))
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (its threads included) so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (its worker processes), as /proc lists them now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def worker_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid`'s worker processes: the live ones' own, plus the ended ones' (the kernel adds a child's
    times to its parent's cutime / cstime when the parent reaps it)."""
    fields = _stat(pid)
    total = (int(fields[13]) + int(fields[14])) / TICK
    for kid in descendants(pid):
        try:
            total += cpu_seconds(kid)
        except OSError:  # ended meanwhile
            pass
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mb(pid: int) -> float:
    """Proportional set size: private pages plus each shared page divided among the processes sharing it (workers
    forked from one zygote share torch's pages; their resident sets would count them once per worker)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def total_pss_mb(pid: int) -> float:
    """The memory of the app and all its worker processes together (PSS: shared pages counted once in all)."""
    total = pss_mb(pid)
    for kid in descendants(pid):
        try:
            total += pss_mb(kid)
        except OSError:
            pass
    return total


def _train_args(client, tab: str) -> list:
    """The /<tab>_train endpoint's arguments: every control at its default, on the CPU."""
    info = client.view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"][f"/{tab}_train"]["parameters"]
    return ["cpu" if p["label"] == "device" else p.get("parameter_default") for p in params]


def _info(out) -> dict:
    value = out[0] if isinstance(out, (list, tuple)) else out
    value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, dict) else {}


def visitor(url: str, tab: str, seconds: float, result: dict) -> None:
    """One visitor: train on `tab` for `seconds` (from its first progress), then press Stop."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
        args = _train_args(client, tab)
        t0 = time.perf_counter()
        job = client.submit(*args, api_name=f"/{tab}_train")
        seen: list[tuple[float, int]] = []
        for out in job:
            info = _info(out)
            now = time.perf_counter()
            if info.get("status") == "running":
                seen.append((now, int(info.get("step", 0))))
            if seen and now - seen[0][0] >= seconds:
                break
            if now - t0 > seconds + 120:  # never started: give up on it, and say so
                break
        t_stop = time.perf_counter()
        client.predict(api_name=f"/{tab}_stop")
        stop_s = time.perf_counter() - t_stop
        rate = ((seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])) if len(seen) > 1 and seen[-1][0] > seen[0][0] \
            else 0.0
        result.update(tab=tab, started=bool(seen), first_progress_s=(seen[0][0] - t0) if seen else None,
                      steps_per_sec=rate, stop_s=stop_s, progress_messages=len(seen))
        job.cancel()
        client.close()
    except Exception as err:  # noqa: BLE001 - a visitor that fails is a result, not a crash of the benchmark
        result.update(tab=tab, started=False, error=f"{type(err).__name__}: {err}"[:200])


def bench_load(visitors: list[int], seconds: float = 10.0, app_dir: Path | None = None,
               idle: float | None = None) -> dict:
    """For each N in `visitors`: N visitors at once (tabs in turn), `seconds` of training each. With `idle`, the
    app frees runs idle that long (PLAYGROUND_IDLE_SECONDS), and the memory after each round is read once the
    round's runs had the time to be freed."""
    if not Path("/proc/self/stat").exists():
        raise BenchError("bench load reads /proc: Linux only")
    rows = []
    env = {"PLAYGROUND_IDLE_SECONDS": str(idle)} if idle else None
    with App(app_dir, env=env) as app:
        pid = app.proc.pid
        alone: dict[str, float] = {}
        for tab, _ in VISITS:  # each tab alone first: what "a fair share" is measured against
            r: dict = {}
            visitor(app.url, tab, seconds, r)
            alone[tab] = r.get("steps_per_sec", 0.0)
        for n in visitors:
            results = [{} for _ in range(n)]
            threads = [threading.Thread(target=visitor, args=(app.url, VISITS[i % len(VISITS)][0], seconds, results[i]),
                                        daemon=True) for i in range(n)]
            mem0, cpu0, t0 = rss_mb(pid), cpu_seconds(pid), time.perf_counter()
            wmem0, wcpu0, nw0 = total_pss_mb(pid), worker_cpu_seconds(pid), len(descendants(pid))
            own0 = time.process_time()  # the simulated visitors' own CPU (gradio clients, in this process)
            for t in threads:
                t.start()
            for t in threads:
                t.join(seconds + 240)
            wall = time.perf_counter() - t0
            cores = (cpu_seconds(pid) - cpu0) / wall
            worker_cores = (worker_cpu_seconds(pid) - wcpu0) / wall
            client_cores = (time.process_time() - own0) / wall
            nw1 = len(descendants(pid))
            if idle:  # the round's runs are idle now: give the app's reaper the time to free them
                time.sleep(idle + max(1.0, idle / 4) + 1.0)
            for r in results:
                if r.get("started") and alone.get(r["tab"]):
                    r["share_of_alone"] = r["steps_per_sec"] / alone[r["tab"]]
            rows.append({"visitors": n, "server_cores": cores, "worker_cores": worker_cores,
                         "client_cores": client_cores,
                         "memory_mb_before": mem0, "memory_mb_after": rss_mb(pid), "all_memory_mb_before": wmem0,
                         "all_memory_mb_after": total_pss_mb(pid), "workers_before": nw0, "workers_after": nw1,
                         "wall_s": wall, "results": results})
    return {"seconds": seconds, "idle": idle, "cores_here": os.cpu_count(), "alone_steps_per_sec": alone, "rows": rows,
            "tabs": {tab: key for tab, key in VISITS}}


def print_load(res: dict) -> None:
    idle = f"; runs idle {res['idle']:.0f} s freed" if res.get("idle") else ""
    print(f"{res['seconds']:.0f} s of training per visitor{idle}, tabs in turn "
          f"({', '.join(f'{t}: {k}' for t, k in res['tabs'].items())}); {res['cores_here']} cores here")
    print("alone: " + " · ".join(f"{t} {v:.0f} steps/s" for t, v in res["alone_steps_per_sec"].items()))
    print("cores: the web process + its workers (+ the simulated visitors' clients, on the same machine)")
    print(f"{'visitors':>8}  {'web + workers (+ clients)':>25}  {'web memory MB':>15}  {'all PSS MB':>15}  "
          f"{'workers':>7}  {'started':>7}  {'first progress s':>16}  {'stop s':>9}  "
          "steps/s per visitor (share of alone)")
    for row in res["rows"]:
        rs = row["results"]
        started = [r for r in rs if r.get("started")]
        first = [r["first_progress_s"] for r in started]
        stops = [r["stop_s"] for r in rs if "stop_s" in r]
        rates = " · ".join(f"{r['tab']} {r['steps_per_sec']:.0f} ({r.get('share_of_alone', float('nan')):.2f})"
                           for r in started)
        cores = (f"{row['server_cores']:.2f} + {row.get('worker_cores', 0.0):.2f} "
                 f"(+ {row.get('client_cores', 0.0):.2f})")
        print(f"{row['visitors']:>8}  {cores:>25}  "
              f"{row['memory_mb_before']:>6.0f} → {row['memory_mb_after']:<6.0f}  "
              f"{row.get('all_memory_mb_before', 0):>6.0f} → {row.get('all_memory_mb_after', 0):<6.0f}  "
              f"{row.get('workers_before', 0):>3}→{row.get('workers_after', 0):<3}  {len(started):>3}/{len(rs):<3}  "
              f"{(f'{statistics.median(first):.1f} (max {max(first):.1f})' if first else '—'):>16}  "
              f"{(f'{max(stops):.2f}' if stops else '—'):>9}  {rates}")
        for r in rs:
            if r.get("error"):
                print(f"          a visitor failed: {r['error']}")
