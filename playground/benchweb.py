"""Browser benchmarks: what a visitor's page actually paints while a model trains.

``python -m playground bench browser [--tab NAME] [--seconds S] [--json]`` starts the app (a separate
process, as a real server), opens each tab in headless Chromium (Debian's, through Playwright), presses
Train, watches S seconds while moving a live slider about once a second, presses Stop, and reports per tab:
painted frames/s, the main thread's busy share (long tasks, and all tasks from Chrome's own counters),
first-frame latency (click -> the status shows the run), Stop latency (click -> the page shows it
stopped), the p95 latency of a slider change reaching the run (click -> the status line shows the new
value, which the server writes from the running session) and bytes per frame.

``python -m playground bench frames [MODEL]`` records the frame messages of a short run exactly as the
app encodes them and replays them in a bare page through the same live.js (no Gradio, no server), at
5 frames/s: main-thread ms per frame, per panel (canvas and Plotly apart), so a view's cost is visible
before it ships.

Numbers are for this machine and this browser (headless, software rendering); compare them within one
run. Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PLAYGROUND_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-quic"]
TABS = ("autoregressive", "latent", "flows", "gans", "ebm", "diffusion")
# the live setting each tab's benchmark moves, and how the status line shows it
SLIDERS = {"gans": "batch"}


class BenchError(Exception):
    """The benchmark cannot run here (no Chromium, no Playwright, the app did not start)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BenchError("needs Playwright: pip install -r requirements-test.txt") from None
    if not os.path.exists(CHROMIUM):
        raise BenchError(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium (or set PLAYGROUND_CHROMIUM)")
    return sync_playwright


class App:
    """`python app.py` in its own process on a free port (the app of another checkout with `app_dir`)."""

    def __init__(self, app_dir: Path | None = None, env: dict | None = None):
        self.dir = Path(app_dir or ROOT)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PLAYGROUND_MAX_RUN_SECONDS="600", **(env or {}))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> App:
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port)], cwd=self.dir, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the app exited: {self.proc.stderr.read()[-500:]}")
            try:
                urllib.request.urlopen(self.url, timeout=1).read(100)
                return self
            except OSError:
                time.sleep(0.3)
        raise BenchError("the app did not answer within 120 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# Logs kept in the page: long tasks, status line changes, paints (live.js) or plot redraws (older apps).
WATCH_JS = """
(tab) => {
  const log = window.__pg = {long: [], status: [], paints: []};
  new PerformanceObserver((l) => { for (const e of l.getEntries()) log.long.push([e.startTime, e.duration]); })
    .observe({type: 'longtask', buffered: false});
  const st = document.getElementById(tab + '-status');
  let last = '';
  const note = () => { const t = st.innerText; if (t !== last) { last = t; log.status.push([performance.now(), t]); } };
  new MutationObserver(note).observe(st, {subtree: true, childList: true, characterData: true});
  note();
  if (window.PGLive) {
    const A = window.PGLive.Area.prototype;
    if (!A.__wrapped) {
      const paint = A.paint;
      A.paint = async function (msg, bytes) {
        const r = await paint.call(this, msg, bytes);
        window.__pg.paints.push([performance.now(), bytes || 0, Object.keys(msg.panels || {}).length, this.cfg.area]);
        return r;
      };
      A.__wrapped = true;
    }
  } else {  // an app without live.js: count redraws of the main panel
    const div = document.querySelector('#' + tab + '-plot-main .live-plot');
    let seen = Number(div.dataset.frames || 0);
    setInterval(() => { const f = Number(div.dataset.frames || 0);
      if (f !== seen) { seen = f; log.paints.push([performance.now(), 0, 1, tab]); } }, 5);
  }
}
"""


def _click(page, selector: str) -> float:
    """A DOM click dispatched in the page, timed there (Playwright's own click waits for the page)."""
    return page.evaluate("(s) => { const t = performance.now(); document.querySelector(s).click(); return t; }",
                         selector)


def _wait_status(page, since: float, text: str, timeout: float) -> float | None:
    """When (page time) the status line first showed `text` after `since`; None on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        hit = page.evaluate("([s, t]) => { const e = window.__pg.status.find(([ts, x]) => ts >= s && x.includes(t));"
                            " return e ? e[0] : null; }", [since, text])
        if hit is not None:
            return hit
        time.sleep(0.02)
    return None


def _task_seconds(cdp) -> float:
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")


def _slider_values(page, tab: str, name: str) -> tuple[str, list[tuple[float, str]]]:
    sel = f"#{tab}-{name} input[type=range]"
    v0 = float(page.evaluate("(s) => document.querySelector(s).value", sel))
    if name == "lr":
        vals = [round(v0 - 0.1, 2), round(v0, 2)]
        return sel, [(v, f"lr {10 ** v:.2g} ") for v in vals]
    vals = [int(v0) - 16, int(v0)]
    return sel, [(v, f"batch {v}|") for v in vals]


# A slider moved as a user lets go of it: its range input's value, input/change and pointerup (gradio's
# `release`), dispatched in the page without scrolling (Playwright's own fill scrolls the panels away).
# Resolves with the page time when the status line shows the new value (the server writes it from the
# running session), or null after 3 s.
SLIDE_JS = """
([sel, value, shown, status]) => new Promise((resolve) => {
  const el = document.querySelector(sel);
  const t0 = performance.now();
  el.value = value;
  for (const type of ['input', 'change']) el.dispatchEvent(new Event(type, {bubbles: true}));
  el.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
  const check = () => {  // the status line is rewritten each frame: look it up each time
    const st = document.querySelector(status);
    if (st && (st.textContent + '|').includes(shown)) resolve(performance.now() - t0);
    else if (performance.now() - t0 > 3000) resolve(null);
    else requestAnimationFrame(check);
  };
  check();
})
"""


def measure_tab(page, cdp, tab: str, seconds: float) -> dict:
    page.evaluate(WATCH_JS, tab)
    t_click = _click(page, f"#{tab}-train")
    t_first = _wait_status(page, t_click, "running", 60)
    slider = SLIDERS.get(tab, "lr")
    sel, values = _slider_values(page, tab, slider)
    has_settings = page.evaluate("(t) => !!document.querySelector('#' + t + '-status .pg-settings')", tab)
    time.sleep(0.5)
    t0 = page.evaluate("performance.now()")
    m0 = _task_seconds(cdp)
    lat = []
    k = 0
    end = time.time() + seconds
    while time.time() < end - 1.0:
        value, shown = values[k % 2]
        k += 1
        if has_settings:
            ms = page.evaluate(SLIDE_JS, [sel, value, shown, f"#{tab}-status .pg-settings"])
            if ms is not None:
                lat.append(ms)
        time.sleep(0.7)
    time.sleep(max(0.0, end - time.time()))
    t1 = page.evaluate("performance.now()")
    m1 = _task_seconds(cdp)
    t_stop = _click(page, f"#{tab}-stop")
    t_stopped = _wait_status(page, t_stop, "stopped", 60)
    step_a = page.inner_text(f"#{tab}-status")
    time.sleep(1.0)
    step_b = page.inner_text(f"#{tab}-status")
    log = page.evaluate("window.__pg")
    window = (t1 - t0) / 1000
    paints = [p for p in log["paints"] if t0 <= p[0] <= t1 and p[2] > 0]
    long_ms = sum(max(0.0, min(s + d, t1) - max(s, t0)) for s, d in log["long"])
    nbytes = [p[1] for p in paints if p[1]]
    return {"tab": tab, "painted_fps": round(len(paints) / window, 2),
            "longtask_busy": round(long_ms / 1000 / window, 3),
            "main_thread_busy": round((m1 - m0) / window, 3),
            "first_frame_ms": round(t_first - t_click) if t_first is not None else None,
            "stop_ms": round(t_stopped - t_stop) if t_stopped is not None else None,
            "stopped_step_frozen": _step(step_a) == _step(step_b),
            "slider": slider, "slider_changes": len(lat),
            "slider_p95_ms": round(_p95(lat)) if lat else None,
            "slider_median_ms": round(statistics.median(lat)) if lat else None,
            "bytes_per_frame": round(statistics.mean(nbytes)) if nbytes else None,
            "seconds": round(window, 2)}


def _step(status: str) -> str:
    import re

    m = re.search(r"step ([\d,]+)", status)
    return m.group(1) if m else status


def _p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


def _warm_up(browser, url: str, tab: str) -> float | None:
    """A first, unmeasured run: a new server process pays one-off costs on its first training (imports,
    first calls, allocations). Returns that run's first-frame latency: what the very first visitor sees."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
    page = ctx.new_page()
    page.goto(f"{url}/?tab={tab}")
    page.wait_for_selector(f"#{tab}-plot-main .js-plotly-plot", timeout=60000)
    page.evaluate(WATCH_JS, tab)
    t_click = _click(page, f"#{tab}-train")
    t_first = _wait_status(page, t_click, "running", 60)
    time.sleep(2.0)
    _click(page, f"#{tab}-stop")
    _wait_status(page, t_click, "stopped", 30)
    ctx.close()
    return round(t_first - t_click) if t_first is not None else None


def bench_browser(tabs=TABS, seconds: float = 8.0, app_dir: str | None = None, query: dict | None = None) -> dict:
    """Each tab's painted frames/s, Stop and slider latency while it trains (measure_tab), opened as a link
    with `query` (e.g. {"model": "vae", "dataset": "8gaussians"}) where given."""
    sync_playwright = _playwright()
    extra = "".join(f"&{k}={v}" for k, v in (query or {}).items())
    rows = []
    with App(Path(app_dir) if app_dir else None) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        cold = _warm_up(browser, app.url, tabs[0])
        for tab in tabs:
            ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
            page = ctx.new_page()
            page.goto(f"{app.url}/?tab={tab}{extra}")
            page.wait_for_selector(f"#{tab}-plot-main .js-plotly-plot", timeout=60000)
            time.sleep(1.0)
            cdp = ctx.new_cdp_session(page)
            cdp.send("Performance.enable")
            from .benchload import cpu_seconds, worker_cpu_seconds

            pid = app.proc.pid
            web0, work0, t0 = cpu_seconds(pid), worker_cpu_seconds(pid), time.perf_counter()
            row = measure_tab(page, cdp, tab, seconds)
            wall = time.perf_counter() - t0
            # the server's CPU while the page trained, watched and stopped: the web process (relaying, drawing and
            # encoding frames) and the worker processes (training) apart
            row.update(web_cores=(cpu_seconds(pid) - web0) / wall,
                       worker_cores=(worker_cpu_seconds(pid) - work0) / wall)
            rows.append(row)
            ctx.close()
        browser.close()
    return {"app": str(Path(app_dir or ROOT).resolve()), "seconds": seconds, "query": query or {}, "results": rows,
            "cold_first_frame_ms": cold,
            "targets": {"painted_fps": ">= 5", "stop_ms": "<= 300", "slider_p95_ms": "<= 300",
                        "first_frame_ms": "<= 1000"}}


def bench_pages(n: int, tabs=TABS, seconds: float = 8.0, app_dir: str | None = None) -> dict:
    """N pages in one headless Chromium train at once (the tabs in turn), each watched for `seconds`: painted
    frames/s, first frame and Stop per page, and the server's CPU (web process and workers apart). The browser
    runs on the same machine: its CPU is reported too, since it competes with the server for the cores."""
    from .benchload import cpu_seconds, descendants, worker_cpu_seconds

    sync_playwright = _playwright()
    with App(Path(app_dir) if app_dir else None) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        _warm_up(browser, app.url, tabs[0])
        pages = []
        for i in range(n):
            tab = tabs[i % len(tabs)]
            ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
            page = ctx.new_page()
            page.goto(f"{app.url}/?tab={tab}")
            page.wait_for_selector(f"#{tab}-plot-main .js-plotly-plot", timeout=60000)
            page.evaluate(WATCH_JS, tab)
            pages.append((ctx, page, tab))
        time.sleep(1.0)
        pid = app.proc.pid
        browser_pids = [q for q in _pids_named("chromium") if q not in descendants(pid)]
        clicks = [_click(page, f"#{tab}-train") for _, page, tab in pages]
        firsts = [_wait_status(page, t, "running", 60) for (_, page, _), t in zip(pages, clicks)]
        web0, work0, b0, w0 = cpu_seconds(pid), worker_cpu_seconds(pid), _cpu_of(browser_pids), time.perf_counter()
        t0s = [page.evaluate("performance.now()") for _, page, _ in pages]
        time.sleep(seconds)
        t1s = [page.evaluate("performance.now()") for _, page, _ in pages]
        wall = time.perf_counter() - w0
        cores = {"web": (cpu_seconds(pid) - web0) / wall, "workers": (worker_cpu_seconds(pid) - work0) / wall,
                 "browser": (_cpu_of(browser_pids) - b0) / wall}
        stops = [_click(page, f"#{tab}-stop") for _, page, tab in pages]
        stopped = [_wait_status(page, t, "stopped", 60) for (_, page, _), t in zip(pages, stops)]
        rows = []
        for (ctx, page, tab), t_click, t_first, t0, t1, t_stop, t_stopped in zip(pages, clicks, firsts, t0s, t1s,
                                                                                 stops, stopped):
            log = page.evaluate("window.__pg")
            paints = [q for q in log["paints"] if t0 <= q[0] <= t1 and q[2] > 0]
            rows.append({"tab": tab, "painted_fps": round(len(paints) / ((t1 - t0) / 1000), 2),
                         "first_frame_ms": round(t_first - t_click) if t_first is not None else None,
                         "stop_ms": round(t_stopped - t_stop) if t_stopped is not None else None})
            ctx.close()
        browser.close()
    return {"pages": n, "seconds": seconds, "results": rows, "cores": cores, "cores_here": os.cpu_count()}


def _pids_named(name: str) -> list[int]:
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if name in (d / "comm").read_text():
                out.append(int(d.name))
        except OSError:
            pass
    return out


def _cpu_of(pids: list[int]) -> float:
    from .benchload import cpu_seconds

    total = 0.0
    for q in pids:
        try:
            total += cpu_seconds(q)
        except OSError:
            pass
    return total


def print_pages(res: dict) -> None:
    c = res["cores"]
    print(f"bench browser --pages {res['pages']}: {res['pages']} pages training at once, {res['seconds']:g} s watched; "
          f"cores used: web process {c['web']:.2f}, workers {c['workers']:.2f}, Chromium {c['browser']:.2f} "
          f"(of {res['cores_here']})")
    print(f"{'tab':<15}{'frames/s':>9}{'first ms':>9}{'stop ms':>8}")
    for r in res["results"]:
        print(f"{r['tab']:<15}{r['painted_fps']:>9.2f}{_fmt(r['first_frame_ms']):>9}{_fmt(r['stop_ms']):>8}")


# --- bench frames: replay recorded messages through live.js in a bare page ------------------------------

# The replay: a bare page with live.js and the panels' containers; the recorded messages are applied by the
# same Area.paint the app uses, one every 1/fps seconds (as a page pulling at that pace would).
REPLAY_SETUP = """
([panels]) => {
  const el = document.getElementById('bus');
  const area = new PGLive.Area(el, {pull: async () => null, poke: async () => {}}, {area: 'replay', panels});
  area.token = 'replay';
  window.__replay = {area, last: 0};
}
"""
REPLAY_JS = """
async ([msgs, panels, fps]) => {
  const {area} = window.__replay;
  const per = [];
  const settle = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  for (let i = 0; i < msgs.length; i++) {
    const wait = window.__replay.last + 1000 / fps - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    window.__replay.last = performance.now();
    const msg = JSON.parse(msgs[i]);
    const before = {};
    for (const n in panels) { const p = area.panel(n); before[n] = p ? [p.t_canvas, p.t_plotly] : [0, 0]; }
    const t0 = performance.now();
    await area.paint(msg, msgs[i].length);
    await settle();
    const rec = {ms: performance.now() - t0, bytes: msgs[i].length, panels: {}};
    for (const n in panels) {
      const p = area.panel(n);
      if (p) rec.panels[n] = [p.t_canvas - before[n][0], p.t_plotly - before[n][1]];
    }
    per.push(rec);
  }
  return per;
}
"""


def record_frames(key: str, dataset: str | None = None, frames: int = 25, steps_between: int = 20,
                  opts: dict | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """A short run's messages as the app sends them: the first has every panel's full figure."""
    from models import REGISTRY, TrainSettings

    from . import views
    from .datasets import make_split
    from .frames import FrameEncoder
    from .session import Session, configure_threads
    from .tabs import panels_for

    configure_threads()
    if key not in REGISTRY:
        raise BenchError(f"unknown model '{key}'")
    tab, panels, settings = panels_for(key)
    data = make_split(dataset or tab.default_dataset, 2000, seed=0)
    sess = Session(key, None, data, TrainSettings.make(**settings), device="cpu")
    enc = FrameEncoder()
    msgs = []
    for _ in range(frames):
        sess.train_steps(steps_between)
        sess.status = "running"
        figs = views.render(sess.snapshot(), **(opts or {}))
        figs = {k: v for k, v in figs.items() if k in dict(panels)}
        msgs.append(enc.encode(figs, status="replay", have=enc.seq))
    return msgs, panels


def bench_frames(key: str, dataset: str | None = None, frames: int = 25, fps: float = 5.0) -> dict:
    """Main-thread milliseconds per replayed frame update (Chrome's own task counter, after the first frame,
    which draws every figure anew) and per panel (canvas and Plotly apart)."""
    sync_playwright = _playwright()
    msgs, panels = record_frames(key, dataset, frames)
    ids = {name: f"pl-{name}" for name, _ in panels}
    body = "<div id='bus'><div class='pg-status'></div></div>" + "".join(
        f"<div id='pl-{n}' style='width:620px;display:inline-block'><div class='live-plot' "
        f"style='height:{h}px;width:100%'></div></div>" for n, h in panels)
    from .liveplot import LIVE_JS, PLOTLY_JS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1300, "height": 2200})
        page.set_content(f"<html><body>{body}</body></html>")
        page.add_script_tag(path=PLOTLY_JS)
        page.add_script_tag(path=LIVE_JS)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.evaluate(REPLAY_SETUP, [ids])
        m0 = _task_seconds(cdp)
        per = page.evaluate(REPLAY_JS, [msgs[:1], ids, fps])  # every panel's first figure
        m1 = _task_seconds(cdp)
        per += page.evaluate(REPLAY_JS, [msgs[1:], ids, fps])  # then the frame updates
        m2 = _task_seconds(cdp)
        browser.close()
    steady = per[1:]  # the first frame draws every figure from scratch
    out = {"model": key, "frames": len(per), "fps": fps,
           "first_frame_main_thread_ms": round((m1 - m0) * 1000, 1),
           "main_thread_ms_per_frame": round((m2 - m1) * 1000 / len(steady), 1),
           "median_frame_ms": round(statistics.median(r["ms"] for r in steady), 1),
           "p95_frame_ms": round(_p95([r["ms"] for r in steady]), 1),
           "median_bytes": round(statistics.median(r["bytes"] for r in steady)),
           "first_bytes": per[0]["bytes"], "panels": {}}
    for name, _ in panels:
        canvas = [r["panels"].get(name, [0, 0])[0] for r in steady]
        plotly_ms = [r["panels"].get(name, [0, 0])[1] for r in steady]
        out["panels"][name] = {"canvas_ms_mean": round(statistics.mean(canvas), 2),
                               "plotly_ms_mean": round(statistics.mean(plotly_ms), 2),
                               "plotly_draws": sum(1 for v in plotly_ms if v > 0)}
    return out


def print_browser(res: dict) -> None:
    print(f"bench browser: {res['seconds']:g} s per tab, app {res['app']} (first frame of the server's very "
          f"first run: {_fmt(res.get('cold_first_frame_ms'))} ms; the rows are measured after it)")
    head = f"{'tab':<15}{'frames/s':>9}{'long tasks':>11}{'busy':>7}{'first ms':>9}{'stop ms':>8}" \
           f"{'slider p95':>11}{'KB/frame':>9}{'web cores':>10}{'workers':>8}"
    print(head)
    for r in res["results"]:
        kb = f"{r['bytes_per_frame'] / 1024:.1f}" if r["bytes_per_frame"] else "-"
        print(f"{r['tab']:<15}{r['painted_fps']:>9.2f}{r['longtask_busy']:>11.0%}{r['main_thread_busy']:>7.0%}"
              f"{_fmt(r['first_frame_ms']):>9}{_fmt(r['stop_ms']):>8}{_fmt(r['slider_p95_ms']):>11}{kb:>9}"
              f"{r.get('web_cores', float('nan')):>10.2f}{r.get('worker_cores', float('nan')):>8.2f}"
              + ("" if r["stopped_step_frozen"] else "   (!) steps still moving after Stop"))
    print("targets: >= 5 frames/s, Stop <= 300 ms, slider p95 <= 300 ms, first frame <= 1000 ms")


def print_frames(res: dict) -> None:
    print(f"bench frames {res['model']}: {res['frames']} frames replayed at {res['fps']:g}/s")
    print(f"  main thread per frame update: {res['main_thread_ms_per_frame']} ms (all its tasks: scripts, style, "
          f"layout, paint; target <= 60); first frame (every figure anew): {res['first_frame_main_thread_ms']} ms")
    print(f"  apply-to-painted per update: median {res['median_frame_ms']} ms, p95 {res['p95_frame_ms']} ms "
          "(includes the wait for the next animation frame)")
    print(f"  bytes per frame: first {res['first_bytes']:,}, then median {res['median_bytes']:,}")
    for name, p in res["panels"].items():
        print(f"  {name:<12} canvas {p['canvas_ms_mean']:6.2f} ms/frame   Plotly {p['plotly_ms_mean']:6.2f} ms/frame "
              f"({p['plotly_draws']} redraws)")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def to_json(res: dict) -> str:
    return json.dumps(res)
