"""`python -m playground bench`: the same training run timed bare and inside the live session.

Bare: Session.train_steps(N) with no frames. Live: Session.run(max_steps=N) with every frame
rendered to figures and encoded as a frame update exactly as the app sends it (views.render +
frames.FrameEncoder), for a page that always wants the next frame.
The two alternate `repeats` times in one process and the median ratio live/bare is reported,
so a noisy shared machine affects both sides alike. Frames take at most 10% of the time and held-out
evaluations 2% (session.py), so the ratio is >= 0.88. `ratio_cpu` is the same ratio in this
process's CPU time, which other processes on a busy machine disturb far less.
"""

from __future__ import annotations

import statistics
import time

import torch

from . import views
from .datasets import DataSplit
from .frames import FrameEncoder
from .session import Session, configure_threads

# model key -> function(cfg, data, settings, seconds, device) -> {name: value}: the same model built
# with a reference library, timed in the same run (see _zuko_reference below)
REFERENCES: dict = {}


def _bare(key, cfg, data, settings, device, steps=None, seconds=None) -> tuple[int, float, float]:
    sess = Session(key, cfg, data, settings, device=device)
    sess.train_steps(20)  # warm-up: first calls allocate and dispatch slowly
    c0 = time.process_time()
    t0 = time.perf_counter()
    if steps is None:
        n = 0
        while time.perf_counter() - t0 < seconds:
            sess.train_steps(10)
            n += 10
        steps = n
    else:
        sess.train_steps(steps)
    if sess.device.type == "cuda":
        torch.cuda.synchronize()
    return steps, time.perf_counter() - t0, time.process_time() - c0


def _live(key, cfg, data, settings, device, steps) -> tuple[float, int, float, dict]:
    """The run as the app makes it for a page that always wants the next frame: every frame's snapshot is
    rendered by the views and encoded as a frame update (playground/frames.py), and that cost is charged
    to the frame budget exactly as the channel reports it."""
    sess = Session(key, cfg, data, settings, device=device)
    sess.train_steps(20)
    enc = FrameEncoder()
    enc.encode(views.render(sess.snapshot()), status="", have=enc.seq)  # warm-up of the frame path
    sess.history = type(sess.history)()
    frames, cost = 0, [0.0]
    snap_ms, enc_ms, sizes = [], [], []
    c0 = time.process_time()
    t0 = time.perf_counter()
    for snap in sess.run(max_steps=steps, frame_cost=lambda: cost[0]):
        if snap is None:
            continue
        t1 = time.thread_time()
        msg = enc.encode(views.render(snap), status="", have=enc.seq)
        cost[0] = time.thread_time() - t1  # CPU time, as the channel measures it
        enc_ms.append(cost[0] * 1000)
        snap_ms.append(sess.last_snapshot_cpu * 1000)
        sizes.append(len(msg))
        frames += 1
    if sess.device.type == "cuda":
        torch.cuda.synchronize()
    costs = {"snapshot_ms": _median(snap_ms[1:] or snap_ms), "encode_ms": _median(enc_ms[1:] or enc_ms),
             "bytes_per_frame": _median(sizes[1:] or sizes)}
    return time.perf_counter() - t0, frames, time.process_time() - c0, costs


def _median(v: list[float]) -> float:
    return statistics.median(v) if v else 0.0


def bench(key: str, cfg: dict, data: DataSplit, settings, seconds: float = 4.0, repeats: int = 3,
          device: str = "auto") -> dict:
    threads = configure_threads()
    ratios, bare_rates, live_rates, fps, cpu_ratios, costs = [], [], [], [], [], []
    steps = None
    for _ in range(max(1, repeats)):
        steps, t_bare, c_bare = _bare(key, cfg, data, settings, device, steps=steps, seconds=seconds)
        t_live, frames, c_live, cost = _live(key, cfg, data, settings, device, steps)
        costs.append(cost)
        bare_rates.append(steps / t_bare)
        live_rates.append(steps / t_live)
        fps.append(frames / t_live)
        ratios.append(t_bare / t_live)
        cpu_ratios.append(c_bare / max(c_live, 1e-9))
    res = {"model": key, "dataset": data.name, "device": str(Session(key, cfg, data, settings, device=device).device),
           "threads": threads, "steps": steps, "repeats": len(ratios),
           "bare_steps_per_second": round(statistics.median(bare_rates), 2),
           "live_steps_per_second": round(statistics.median(live_rates), 2),
           "frames_per_second": round(statistics.median(fps), 2),
           "ratio": round(statistics.median(ratios), 4), "ratios": [round(r, 4) for r in ratios],
           "ratio_cpu": round(statistics.median(cpu_ratios), 4),
           "frame_snapshot_ms": round(statistics.median(c["snapshot_ms"] for c in costs), 2),
           "frame_encode_ms": round(statistics.median(c["encode_ms"] for c in costs), 2),
           "frame_bytes": round(statistics.median(c["bytes_per_frame"] for c in costs))}
    if key in REFERENCES:
        res["references"] = REFERENCES[key](cfg, data, settings, seconds, device)
    return res


# --- reference: the same flow built with zuko (a test/bench extra, not an app dependency) ----------------

def _zuko_flow(key: str, cfg: dict):
    """zuko's RealNVP / NICE / MAF with our architecture: the same number of layers, hidden widths and
    depth, alternating masks / orders, N(0, I) base; affine transforms with zuko's soft-clamped log-scale
    (RealNVP, MAF), or additive couplings and one diagonal scaling at the same end as ours (NICE)."""
    import zuko

    from models import REGISTRY

    c = {**REGISTRY[key].Config().as_dict(), **cfg}
    kw = dict(transforms=c["layers"], hidden_features=(c["hidden"],) * c["depth"])
    if key == "realnvp":
        return zuko.flows.RealNVP(2, **kw)
    if key == "maf":
        return zuko.flows.MAF(2, **kw)
    if key != "nice":
        raise KeyError(f"no zuko reference for '{key}'")
    from zuko.flows import Flow, GeneralCouplingTransform, UnconditionalDistribution, UnconditionalTransform
    from zuko.transforms import AdditiveTransform

    couplings = [GeneralCouplingTransform(2, mask=torch.arange(2) % 2 == i % 2, univariate=AdditiveTransform,
                                          shapes=((),), hidden_features=kw["hidden_features"])
                 for i in range(kw["transforms"])]
    scaling = UnconditionalTransform(_zuko_scaling, torch.zeros(2))
    # zuko lists its transforms x -> z; ours are listed z -> x (models/flows/model.py NICE.scaling_end)
    at_latent = REGISTRY["nice"].scaling_end == "latent"
    transforms = couplings + [scaling] if at_latent else [scaling] + couplings
    base = UnconditionalDistribution(zuko.distributions.DiagNormal, torch.zeros(2), torch.ones(2), buffer=True)
    return Flow(transforms, base)


def _zuko_scaling(log_s: torch.Tensor):
    """NICE's diagonal scaling z_i = x_i / s_i as a zuko transform (x -> z), log s a free parameter."""
    from torch.distributions.transforms import AffineTransform

    return AffineTransform(0.0, torch.exp(-log_s), event_dim=1)


def _rate(step, x: torch.Tensor, batch: int, seconds: float, gen: torch.Generator) -> tuple[float, float]:
    """Steps per second of step(batch) with the session's batching (random indices each step), in
    wall-clock time and in this process's CPU time (which other processes disturb far less)."""
    def one():
        step(x[torch.randint(0, x.shape[0], (batch,), generator=gen, device=x.device)])

    for _ in range(20):
        one()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            one()
        n += 10
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def _zuko_reference(key: str):
    def ref(cfg, data, settings, seconds, device) -> dict:
        from models import build
        from models.base import make_adam

        dev = Session(key, cfg, data, settings, device=device).device
        x = torch.as_tensor(data.train, device=dev)
        torch.manual_seed(settings.seed)
        ours = build(key, **cfg).to(dev)
        ours.init_from_data(x)
        opts = ours.configure_optimizers(settings)
        theirs = _zuko_flow(key, cfg).to(dev)
        plain = torch.optim.Adam(theirs.parameters(), lr=settings.lr)
        fused = make_adam(theirs.parameters(), settings.lr)

        def zuko_step(opt):
            def step(xb):
                opt.zero_grad(set_to_none=True)
                (-theirs().log_prob(xb).mean()).backward()
                opt.step()
            return step

        gen = torch.Generator(device=dev).manual_seed(settings.seed)
        wall: dict[str, list[float]] = {"ours": [], "zuko": [], "zuko_fused": []}
        cpu: dict[str, list[float]] = {k: [] for k in wall}
        runs = {"ours": lambda xb: ours.step(xb, opts), "zuko": zuko_step(plain), "zuko_fused": zuko_step(fused)}
        for _ in range(3):  # alternate, so a noisy shared machine slows all three alike
            for name, step in runs.items():
                w, c = _rate(step, x, settings.batch, seconds / 2, gen)
                wall[name].append(w)
                cpu[name].append(c)
        med = {k: statistics.median(v) for k, v in wall.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        mode = " (ours compiled)" if cfg.get("compile") else ""
        return {"zuko": f"ours {med['ours']:.0f} steps/s{mode}, zuko {med['zuko']:.0f} steps/s (its usual Adam): "
                        f"{med['ours'] / med['zuko']:.2f}x (target >= 1.5x); zuko with fused Adam "
                        f"{med['zuko_fused']:.0f} steps/s: {med['ours'] / med['zuko_fused']:.2f}x; in CPU time "
                        f"{med_cpu['ours'] / med_cpu['zuko']:.2f}x and {med_cpu['ours'] / med_cpu['zuko_fused']:.2f}x",
                "zuko_ratio": round(med["ours"] / med["zuko"], 3),
                "zuko_fused_ratio": round(med["ours"] / med["zuko_fused"], 3),
                "zuko_ratio_cpu": round(med_cpu["ours"] / med_cpu["zuko"], 3),
                "zuko_fused_ratio_cpu": round(med_cpu["ours"] / med_cpu["zuko_fused"], 3),
                "steps_per_second": {k: round(v, 1) for k, v in med.items()}}
    return ref


REFERENCES.update(realnvp=_zuko_reference("realnvp"), nice=_zuko_reference("nice"), maf=_zuko_reference("maf"))


# --- MCMC throughput (notes 7.3): chains x steps per second -------------------------------------------

SAMPLER_TARGETS = ("donut", "ebm")


def _sampler_target(name: str, device: torch.device):
    """log p up to a constant: an analytic energy target, or the energy network of an EBM as the EBM
    tab builds it (the default contrastive-divergence model, untrained: the cost does not depend on
    the weights)."""
    from models import build

    from .densities import ENERGIES

    if name == "ebm":
        model = build("ebm_cd").to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.f
    energy = ENERGIES[name]
    return lambda x: -energy(x)


def bench_samplers(chains: tuple[int, ...] = (100, 1000, 10000), seconds: float = 1.5,
                   device: str = "auto", targets: tuple[str, ...] = SAMPLER_TARGETS) -> dict:
    """Chain-steps per second of Langevin, MALA and random-walk Metropolis–Hastings (models/samplers.py)
    for several numbers of chains run as one batch, on an analytic target and on an EBM's network."""
    from models.samplers import METHODS, run_chains

    from .session import resolve_device

    threads = configure_threads()
    dev = resolve_device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    for tname in targets:
        log_prob = _sampler_target(tname, dev)
        for method in METHODS:
            for n in chains:
                x = (torch.randn(n, 2, generator=gen) * 2.0).to(dev)
                run_chains(log_prob, x, method, n_steps=5)  # warm-up
                steps, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    out = run_chains(log_prob, x, method, n_steps=20, step_size=0.01, proposal_std=0.3)
                    x = out.x
                    steps += 20
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                rows.append({"target": tname, "method": method, "chains": n, "steps_per_second": round(steps / dt, 1),
                             "chain_steps_per_second": round(n * steps / dt, 1),
                             "accept_rate": None if out.accept_rate != out.accept_rate else round(out.accept_rate, 3)})
    return {"device": str(dev), "threads": threads, "results": rows}
