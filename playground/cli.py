"""The headless command line: `python -m playground list | train | bench`.

    python -m playground list --json
    python -m playground train mog --dataset moons --steps 2000 --set K=16 --json
    python -m playground train realnvp --data my.csv --test-data held.csv --save-samples out.csv
    python -m playground bench mog --json

Bad arguments and bad files exit with status 2 and one line on stderr saying why. `train` exits with 1
when the run diverged (a NaN, infinite or exploded loss, NLL or samples: see playground/session.py; the
metrics are those of the last good model) and 130 after Ctrl-C (it stops after the current step and
prints the metrics of what it has). Likelihoods are in nats per point, in the data's own coordinates.

torch and the models are imported only once the arguments parsed and only by the commands that use them, so
that a bad command line is refused at once. An unknown model key is refused from the registry's keys as last
seen (see known_model_keys), and a hyperparameter under its old name (BaseConfig.renamed) still works, with a
note on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .datasets import (
    DATASETS,
    MAX_CSV_BYTES,
    MB,
    DataError,
    DataSplit,
    box_of,
    check_points,
    make_split,
    parse_csv,
    split_array,
    write_csv,
)


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(message)


# --- the model registry, and its keys without importing it ----------------------------------------------------

def _models_folder() -> Path:
    """The folder of the `models` package that `import models` would load (found without importing it)."""
    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("no 'models' package on the path")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def models_fingerprint(folder: Path) -> str:
    """A hash of every Python source under `folder` (names and contents): it changes whenever a model is added,
    removed, renamed or edited, so keys remembered with it are never used for another version of the models."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _keys_file(folder: Path) -> Path:
    """Where the registry's keys of this checkout's models are remembered (a cache, safe to delete):
    $PLAYGROUND_CACHE_DIR, else $XDG_CACHE_HOME/generative-models-playground, else ~/.cache/... ."""
    root = os.environ.get("PLAYGROUND_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "generative-models-playground")
    return Path(root) / f"model-keys-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}.json"


def known_model_keys() -> list[str] | None:
    """The registered model keys without importing torch: those the real registry held when this checkout's
    models were last imported by the command line (_registry writes them), provided that no source file of
    `models` changed since (models_fingerprint). None when they are not known: then only the registry can say."""
    try:
        folder = _models_folder()
        blob = json.loads(_keys_file(folder).read_text())
        if blob.get("fingerprint") == models_fingerprint(folder) and isinstance(blob.get("keys"), list):
            return [str(k) for k in blob["keys"]]
    except (OSError, ValueError, ImportError, AttributeError):
        pass
    return None


def _registry() -> dict:
    """models.REGISTRY (importing torch and every model family), its keys remembered for known_model_keys. Only
    the classes of the `models` package count (not one that a caller in this process registered itself), and
    the fingerprint is taken before the import, so that a source edited meanwhile makes the keys stale, never
    wrong."""
    if "models" in sys.modules:
        return sys.modules["models"].REGISTRY
    try:
        folder = _models_folder()
        fingerprint = models_fingerprint(folder)
    except (OSError, ImportError):
        folder = None
    import models

    if folder is not None:
        keys = sorted(k for k, c in models.REGISTRY.items() if c.__module__.split(".")[0] == "models")
        target = _keys_file(folder)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "keys": keys, "models": str(folder)}))
            os.replace(tmp, target)  # atomic: a concurrent reader sees the old file or the new one
        except OSError:
            pass  # a read-only home: the keys are simply not remembered
    return models.REGISTRY


def model_keys() -> list[str]:
    """The registered model keys: the registry's own where it is imported already, else the remembered ones
    (known_model_keys), else the registry's after importing it."""
    if "models" not in sys.modules:
        keys = known_model_keys()
        if keys is not None:
            return keys
    return sorted(_registry())


def check_model_key(key: str) -> None:
    """Refuse an unknown model key (UsageError), without importing torch where the keys are known."""
    keys = model_keys()
    if key not in keys:
        raise UsageError(f"unknown model '{key}' (known: {', '.join(sorted(keys))})")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m playground", description="Train and benchmark the playground's models headless.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="models (with hyperparameters) and datasets")
    ls.add_argument("--json", action="store_true")

    tr = sub.add_parser("train", help="train one model and print its metrics")
    tr.add_argument("model", nargs="?", default=None, help="a model key (omit it with --resume)")
    tr.add_argument("--resume", metavar="FILE.pt", help="go on from a saved run (its model, data and settings)")
    tr.add_argument("--save-model", metavar="FILE.pt", help="save the run after training (weights, settings, "
                                                             "data, history: one file; see --resume)")
    _data_args(tr)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--batch", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a model hyperparameter (repeatable); see `list`")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--test-data", metavar="FILE.csv", help="evaluate on this held-out set (train on all of --data)")
    tr.add_argument("--save-samples", metavar="FILE.csv", help="write model samples after training")
    tr.add_argument("--samples", type=int, default=1000, help="how many samples --save-samples writes")
    tr.add_argument("--json", action="store_true", help="print one JSON object")

    sa = sub.add_parser("sample", help="samples of a saved model as CSV")
    sa.add_argument("file", metavar="FILE.pt")
    sa.add_argument("--n", type=int, default=1000, help="how many samples")
    sa.add_argument("--out", metavar="FILE.csv", default=None, help="where to write them (default: stdout)")
    sa.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])

    ev = sub.add_parser("eval", help="held-out metrics of a saved model (on its own held-out points or --data)")
    ev.add_argument("file", metavar="FILE.pt")
    ev.add_argument("--data", metavar="FILE.csv", default=None, help="points to evaluate on: two numeric columns")
    ev.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--json", action="store_true")

    rc = sub.add_parser("record", help="train a model and record a panel as an animation (.html, .gif or .mp4)")
    rc.add_argument("model")
    _data_args(rc)
    rc.add_argument("--steps", type=int, default=1000)
    rc.add_argument("--frames", type=int, default=40, help="frames in the animation (evenly spread over the run)")
    rc.add_argument("--panel", default=None, help="which panel (default: the family view's first, 'main')")
    rc.add_argument("--out", metavar="FILE.html|FILE.gif|FILE.mp4", required=True)
    rc.add_argument("--size", default="480x420", help="GIF size in pixels, WIDTHxHEIGHT")
    rc.add_argument("--seed", type=int, default=0)
    rc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rc.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    co = sub.add_parser("compare", help="several models, same data, same time budget, same metrics")
    co.add_argument("--models", default=None, help="comma-separated keys (default: one or two per family)")
    _data_args(co)
    co.add_argument("--seconds", type=float, default=10.0, help="training time per model")
    co.add_argument("--seed", type=int, default=0)
    co.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    co.add_argument("--json", action="store_true")

    be = sub.add_parser("bench", help="steps/s bare vs inside the live session with frames rendered; "
                                      "'bench samplers': MCMC chains x steps per second; 'bench browser': what "
                                      "the page paints per tab; 'bench frames MODEL': the browser's cost per frame; "
                                      "'bench load': visitors training at once through the app's API")
    be.add_argument("model", nargs="?", default="mog",
                    help="a model key, or 'samplers', 'browser', 'frames', 'quality' (held-out NLL gap to the true "
                         "entropy, ours vs references, at equal steps), 'load' (visitors at once), 'diffusion' (the "
                         "diffusion family vs Real NVP at equal wall time, and its speed)")
    be.add_argument("target", nargs="?", default=None, help="'frames' only: the model whose frames to replay")
    be.add_argument("--tab", action="append", default=[], help="'browser' only: a tab to measure (repeatable; "
                                                              "default: every tab with training)")
    be.add_argument("--app-dir", default=None, help="'browser' and 'load': run the app of another checkout (to "
                                                     "compare before/after in one run)")
    be.add_argument("--frames", type=int, default=25, help="'frames' only: how many frames to record and replay")
    be.add_argument("--chains", default="100,1000,10000", help="'samplers' only: numbers of chains to time")
    _data_args(be)
    be.add_argument("--seconds", type=float, default=None,
                    help="length of each timed run (default 4; 'browser': seconds watched per tab, default 8)")
    be.add_argument("--repeats", type=int, default=3, help="bare/live pairs; the median ratio is reported")
    be.add_argument("--batch", type=int, default=None)
    be.add_argument("--seed", type=int, default=0)
    be.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    be.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    be.add_argument("--json", action="store_true")
    be.add_argument("--families", default=None, help="'quality' only: comma-separated families (flows, latent, "
                                                      "autoregressive, ebm, gan; default all)")
    be.add_argument("--models", default=None, help="'quality': comma-separated model keys (added to --families); "
                                                   "'browser': the model the one --tab opens with; 'diffusion': the "
                                                   "models to train (default ddpm, score_sde, flow_matching, realnvp)")
    be.add_argument("--datasets", default=None, help="'quality' and 'diffusion': comma-separated built-in sets")
    be.add_argument("--steps", type=int, default=3000, help="'quality' only: training steps of every model")
    be.add_argument("--seeds", type=int, default=1, help="'quality' only: runs per row (seeds --seed, --seed+1, ...)")
    be.add_argument("--eval-n", type=int, default=20000, help="'quality' only: fresh held-out points per run")
    be.add_argument("--pages", type=int, default=1, help="'browser' only: this many pages train at once (the tabs "
                    "in turn): frames/s, first frame and Stop per page, the server's and the browser's CPU")
    be.add_argument("--visitors", default="1,4,8", help="'load' only: comma-separated numbers of visitors at once")
    be.add_argument("--idle", type=float, default=None, help="'load' only: the app frees runs idle this many seconds "
                                                             "(PLAYGROUND_IDLE_SECONDS; memory read after)")
    sw = sub.add_parser("sweep", help="a grid of runs (models x datasets x seeds x settings) in worker processes, "
                                      "to a CSV (resumable) and an HTML summary")
    sw.add_argument("--models", required=True, help="comma-separated model keys")
    sw.add_argument("--datasets", default="8gaussians", help="comma-separated built-in datasets")
    sw.add_argument("--seeds", default="0-2", help="'0-9', '0,3,5' or both")
    sw.add_argument("--steps", type=int, default=1000)
    sw.add_argument("--n", type=int, default=2000, help="points per dataset (20%% held out)")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                    help="a hyperparameter (or lr, batch) and its values: every combination is run")
    sw.add_argument("--workers", type=int, default=None, help="processes at once (default: the cores)")
    sw.add_argument("--out", required=True, help="the CSV to write (rows are appended: an existing one resumes)")
    sw.add_argument("--ray", default=os.environ.get("PLAYGROUND_RAY_ADDRESS"), metavar="ADDRESS",
                    help="run on Ray: a cluster's address, or 'local' (default: $PLAYGROUND_RAY_ADDRESS; "
                         "pip install -r requirements-ray.txt)")
    sub.metavar = "{" + ",".join(sub.choices) + "}"  # a missing command is named by its choices, not by 'cmd'
    return ap


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--data", metavar="FILE.csv", help="your own points: two numeric columns")
    p.add_argument("--n", type=int, default=2000, help="number of points of a built-in dataset")
    p.add_argument("--noise", type=float, default=None, help="noise level of a built-in dataset")
    p.add_argument("--standardise", action="store_true", help="standardise --data to zero mean, unit variance")


def _read_csv(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size > MAX_CSV_BYTES:  # refused before reading it: the message gives its real size
        raise DataError(f"{path}: file is {size / MB:.2f} MB, over the {MAX_CSV_BYTES // MB} MB limit")
    with open(path, "rb") as f:
        blob = f.read(MAX_CSV_BYTES + 1)
    try:
        return parse_csv(blob)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def load_data(args, seed: int) -> DataSplit:
    """The data split the command line asked for; with --test-data all other points train."""
    if args.data and args.dataset:
        raise UsageError("give either --dataset or --data, not both")
    test_file = getattr(args, "test_data", None)
    if args.data:
        x = _read_csv(args.data)
        name = os.path.basename(args.data)
        if not test_file:
            try:
                return split_array(x, name, seed=seed, standardise=args.standardise)
            except DataError as err:
                raise DataError(f"{args.data}: {err}") from None
        test = _read_csv(test_file)
        if args.standardise:
            mean, std = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
            x, test = (x - mean) / std, (test - mean) / std
        train32 = _checked(x, args.data, "the points")
        return DataSplit(train32, _checked(test, test_file, "the held-out points", spread=False), name, box_of(x),
                         info={"test_data": test_file})
    split = make_split(args.dataset or "8gaussians", args.n, args.noise, seed)
    if test_file:
        test = _checked(_read_csv(test_file), test_file, "the held-out points", spread=False)
        split = DataSplit(np.concatenate([split.train, split.test]), test, split.name, split.box,
                          log_prob=split.log_prob, modes=split.modes, mode_std=split.mode_std,
                          info=dict(split.info, test_data=test_file))
    return split


def _checked(x: np.ndarray, path: str, what: str, spread: bool = True) -> np.ndarray:
    try:
        return check_points(x, what, spread=spread)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def parse_sets(model: str, pairs: list[str], extra: dict) -> tuple[dict, dict]:
    """--set KEY=VALUE pairs into (model config, training settings), validated. A hyperparameter under its old
    name (the Config's `renamed`) is taken under its new one, with a note on stderr, once per name, after every
    pair is valid (a bad value's one-line error carries the note itself)."""
    from models import ConfigError, TrainSettings

    registry = _registry()
    if model not in registry:
        raise UsageError(f"unknown model '{model}' (known: {', '.join(sorted(registry))})")
    cfg_cls = registry[model].Config
    cfg, settings, notes = {}, {}, {}
    names = {s["name"] for s in cfg_cls.spec()}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set expects KEY=VALUE, got '{pair}'")
        k, v = pair.split("=", 1)
        k, note = cfg_cls.canonical(k.strip())
        if k in names:
            try:
                cfg[k] = cfg_cls.coerce(k, v)
            except ConfigError as err:
                raise ConfigError(f"{err} ({note})" if note else str(err)) from None
            if note:
                notes[note] = None
        elif k in ("lr", "batch", "seed"):
            settings[k] = TrainSettings.coerce(k, v)
        else:
            raise ConfigError(f"unknown setting '{k}' for {model} (known: {', '.join(sorted(names))}, lr, batch, seed)")
    for k, v in extra.items():
        if v is not None:
            settings[k] = TrainSettings.coerce(k, v)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return cfg, settings


def cmd_list(args) -> int:
    from models import TrainSettings

    models = [{"key": k, "family": c.family, "title": c.title, "density": c.density,
               "hyperparameters": c.Config.spec(), "renamed": dict(c.Config.renamed)}
              for k, c in sorted(_registry().items())]
    datasets = [{"name": d.name, "title": d.title, "noise": d.noise, "noise_range": list(d.noise_range),
                 "closed_form_density": d.has_density(), "description": d.description}
                for d in DATASETS.values()]
    settings = TrainSettings.spec()
    if args.json:
        print(json.dumps({"models": models, "datasets": datasets, "training": settings}, indent=1))
        return 0
    print("models:")
    for m in models:
        hps = ", ".join(f"{h['name']}={h['default']}" for h in m["hyperparameters"])
        print(f"  {m['key']:<12} {m['family']:<15} {m['title']}  [{hps}]")
    print("datasets:")
    for d in datasets:
        print(f"  {d['name']:<13} {d['description']}")
    return 0


def _check_output(path: str, flag: str = "--save-samples") -> None:
    """Refuse an output file that cannot be written, before training (not after it)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable")


class _CtrlC:
    """While training: the first Ctrl-C asks the session to stop after its current step (the metrics of what
    it has are printed, exit status 130); a second one interrupts at once."""

    def __init__(self, sess):
        self.sess, self.pressed, self.old = sess, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.pressed = True
        self.sess.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def cmd_train(args) -> int:
    """Exit status: 0 trained, 1 diverged (the last good model is evaluated) or the samples could not be
    written, 2 bad arguments or data, 130 stopped by Ctrl-C (after printing the metrics of what it has)."""
    if args.resume is None and args.model is None:
        raise UsageError("name a model to train, or --resume FILE.pt")
    if args.model is not None:
        check_model_key(args.model)  # what can be refused without torch is refused first
    if args.steps < 0 or args.samples < 1:
        raise UsageError("--steps must be >= 0 and --samples >= 1")
    if args.save_samples:
        _check_output(args.save_samples)
    if args.save_model:
        _check_output(args.save_model, "--save-model")
    from models import TrainSettings

    from . import saving
    from .session import Session, configure_threads

    configure_threads()
    if args.resume is not None:
        if args.dataset or args.data or args.set or args.test_data:
            raise UsageError("--resume goes on with the saved run's model, data and settings: drop --dataset, "
                             "--data, --set and --test-data")
        blob = saving.read(args.resume)
        if args.model is not None and args.model != blob["key"]:
            raise UsageError(f"{args.resume} holds a {blob['key']} run, not {args.model}")
        args.model = blob["key"]
        sess = saving.restore(blob, device=args.device)
        for name, value in (("lr", args.lr), ("batch", args.batch)):
            if value is not None:
                sess.set_live(name, value)
        data, settings = sess.data, sess.settings
        print(f"resuming {args.model} on {data.name} at step {sess.step_count}", file=sys.stderr, flush=True)
    else:
        cfg, extra = parse_sets(args.model, args.set, {"lr": args.lr, "batch": args.batch, "seed": args.seed})
        settings = TrainSettings.make(**extra)
        data = load_data(args, settings.seed)
        sess = Session(args.model, cfg, data, settings, device=args.device)
    t0 = time.perf_counter()
    with _CtrlC(sess) as ctrl_c:  # the line comes once Ctrl-C is ours: from then on it stops after a step
        source = f" from {sess.source.name}" if sess.source is not None else ""  # a CycleGAN's source domain
        print(f"training {args.model} on {data.name}{source}: {args.steps} steps (Ctrl-C stops early and prints the "
              "metrics)", file=sys.stderr, flush=True)
        ok = sess.train_steps(args.steps, stop=lambda: ctrl_c.pressed)  # a Ctrl-C before it starts counts too
    seconds = time.perf_counter() - t0
    metrics = sess.evaluate()
    if ok and not sess.check_evaluation(metrics):  # exploded samples or NLL: rolled back to a sound checkpoint
        ok, metrics = False, sess.evaluate()
    out = {"model": args.model, "dataset": data.name, "steps": sess.step_count, "seconds": round(seconds, 3),
           "steps_per_second": round(sess.step_count / seconds, 2) if seconds > 0 else None,
           "device": str(sess.device), "config": sess.model.cfg.as_dict(), "settings": settings.as_dict(),
           "n_train": int(len(data.train)), "n_test": int(len(data.test)), "diverged": not ok,
           "interrupted": ctrl_c.pressed, "message": sess.message,
           "metrics": {k: _num(v) for k, v in metrics.items()}}
    write_error = None
    if args.save_model:
        try:
            saving.save(sess, args.save_model, spec=_spec_of(args, data))
            out["model_file"] = args.save_model
        except OSError as err:
            write_error = f"--save-model {args.save_model}: {err.strerror or err}"
            out["model_error"] = write_error
    if args.save_samples:
        try:
            samples = sess.model.sample(args.samples).detach().cpu().numpy()
            write_csv(args.save_samples, samples)
            out["samples_file"] = args.save_samples
        except OSError as err:  # the metrics are still printed below
            write_error = f"--save-samples {args.save_samples}: {err.strerror or err}"
            out["samples_error"] = write_error
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} on {data.name}: {out['steps']} steps in {seconds:.1f} s "
              f"({out['steps_per_second']} steps/s) on {out['device']}")
        for k, v in out["metrics"].items():
            print(f"  {k:<16} {v}")
        if not ok:
            print(f"  diverged: {sess.message}")
        if ctrl_c.pressed:
            print(f"  interrupted: {sess.message}")
    if write_error:
        print(f"error: {write_error}", file=sys.stderr)
    return 130 if ctrl_c.pressed else 0 if ok and not write_error else 1


def _spec_of(args, data) -> dict:
    """The data fields of the run spec a saved file keeps (the tab puts its controls back from them)."""
    if args.resume is not None:
        from . import saving

        return saving.spec_fields(saving.read(args.resume))
    if args.data:
        return {"source": "Upload CSV", "csv_name": os.path.basename(args.data), "standardise": bool(args.standardise)}
    return {"source": "Built-in", "dataset": data.name, "n_points": int(args.n),
            "noise": float(data.info.get("noise", 0.0))}


def _saved(path: str, device: str):
    from . import saving
    from .session import configure_threads

    configure_threads()
    return saving.restore(saving.read(path), device=device)


def cmd_sample(args) -> int:
    if not 1 <= args.n <= 1_000_000:
        raise UsageError("--n: between 1 and 1,000,000 samples")
    if args.out:
        _check_output(args.out, "--out")
    sess = _saved(args.file, args.device)
    pts = sess.sample_points(args.n)
    if args.out:
        write_csv(args.out, pts)
        print(f"{args.n} samples of {sess.key} (step {sess.step_count}) written to {args.out}", file=sys.stderr)
    else:
        print("x,y")
        for x, y in pts:
            print(f"{x:.7g},{y:.7g}")
    return 0


def cmd_eval(args) -> int:
    import torch

    sess = _saved(args.file, args.device)
    test = None
    if args.data:
        test = torch.as_tensor(_checked(_read_csv(args.data), args.data, "--data"), device=sess.device)
    metrics = sess.evaluate(test)
    n = len(sess.data.test) if test is None else len(test)
    out = {"model": sess.key, "step": sess.step_count, "dataset": sess.data.name, "n": int(n),
           "on": args.data or "the saved held-out points", "metrics": {k: _num(v) for k, v in metrics.items()}}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{sess.key} at step {sess.step_count} on {out['on']} ({n} points)")
        for k, v in out["metrics"].items():
            print(f"  {k:<16} {v}")
    return 0


def cmd_record(args) -> int:
    check_model_key(args.model)
    if args.steps < 1 or not 2 <= args.frames <= 500:
        raise UsageError("--steps must be >= 1 and --frames in [2, 500]")
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".html", ".gif", ".mp4"):
        raise UsageError("--out: a .html, .gif or .mp4 file")
    if ext == ".mp4":
        from .recording import VIDEO_EXTRA, video_available

        if not video_available():
            raise UsageError(f"--out: an .mp4 needs imageio-ffmpeg ({VIDEO_EXTRA}); a .gif or .html needs nothing more")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size wants WIDTHxHEIGHT, not '{args.size}'") from None
    if not (160 <= width <= 1600 and 160 <= height <= 1600):
        raise UsageError("--size: each side between 160 and 1600 pixels")
    _check_output(args.out, "--out")
    from models import TrainSettings

    from . import recording, views
    from .session import Session, configure_threads

    configure_threads()
    cfg, extra = parse_sets(args.model, args.set, {"seed": args.seed})
    data = load_data(args, TrainSettings.make(**extra).seed)
    sess = Session(args.model, cfg, data, TrainSettings.make(**extra), device=args.device)
    rec = recording.Recorder(args.frames + 1)  # the frame at step 0 and one every `every` steps
    every = max(1, args.steps // args.frames)
    panel = None
    for done in range(0, args.steps + 1, every):
        if done and not sess.train_steps(min(every, args.steps - sess.step_count) or every):
            break
        figs = views.render(sess.snapshot(evaluate=True))
        panel = panel or (args.panel if args.panel else next(iter(figs)))
        if panel not in figs:
            raise UsageError(f"no panel '{panel}' in {args.model}'s view (it has: {', '.join(figs)})")
        rec.add(sess.step_count, figs[panel])
    if ext == ".html":
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(recording.to_html(rec.frames, f"{args.model} on {data.name}"))
        n = len(rec)
    elif ext == ".mp4":
        n = recording.to_mp4(rec.frames, args.out, size=(width, height), fps=6)
    else:
        n = recording.to_gif(rec.frames, args.out, size=(width, height), fps=6)
    print(f"{n} frames of {args.model}'s '{panel}' panel (steps 0–{sess.step_count}) written to {args.out} "
          f"({os.path.getsize(args.out) / 1024:.0f} KB)", file=sys.stderr)
    return 0


def _num(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def cmd_compare(args) -> int:
    keys = [k.strip() for k in args.models.split(",")] if args.models else None
    if keys:  # refused without torch where the keys are known
        known = model_keys()
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise UsageError(f"unknown model(s): {', '.join(unknown)}")
    if args.seconds <= 0:
        raise UsageError("--seconds must be > 0")
    from .compare import compare, default_keys, table
    from .session import configure_threads

    configure_threads()
    keys = keys or default_keys()
    unknown = [k for k in keys if k not in _registry()]
    if unknown:
        raise UsageError(f"unknown model(s): {', '.join(unknown)}")
    args.test_data = None
    data = load_data(args, args.seed)
    entries = []
    for entries in compare(keys, data, seconds=args.seconds, seed=args.seed, device=args.device):  # noqa: B007
        pass  # the last yield holds every model's result
    data_nll = float(-np.mean(data.log_prob(data.test))) if data.log_prob is not None else None
    rows = [{k: _num(v) for k, v in r.items()} for r in table(entries, data_nll)]
    if args.json:
        print(json.dumps({"dataset": data.name, "seconds_per_model": args.seconds, "data_nll": data_nll,
                          "results": rows}))
        return 0
    print(f"{data.name}: {args.seconds:g} s per model" + (f"; true density NLL {data_nll:.3f}" if data_nll else ""))
    for r in rows:
        nll = "no density" if r["density"] == "none" else r["test_nll"]
        nll = f"{nll:.3f}" if isinstance(nll, float) else nll
        ed = f"{r['energy_distance']:.4f}" if isinstance(r["energy_distance"], float) else "-"
        print(f"  {r['model']:<15} {r['status']:<9} steps {r['steps']:>7}  NLL {nll:>10}  energy dist {ed}")
    return 0


def cmd_bench(args) -> int:
    if args.model in ("browser", "frames"):
        return cmd_bench_web(args)
    if args.model == "load":
        return cmd_bench_load(args)
    if args.model == "quality":
        return cmd_bench_quality(args)
    if args.model == "diffusion":
        return cmd_bench_diffusion(args)
    args.seconds = 4.0 if args.seconds is None else args.seconds
    if args.model != "samplers":
        check_model_key(args.model)
    from models import TrainSettings

    from .bench import bench, bench_samplers

    if args.model == "samplers":
        try:
            chains = tuple(int(c) for c in args.chains.split(","))
        except ValueError:
            raise UsageError(f"--chains wants comma-separated integers, not '{args.chains}'") from None
        if not chains or min(chains) < 1 or max(chains) > 1_000_000:
            raise UsageError("--chains: between 1 and 1,000,000 chains")
        res = bench_samplers(chains, seconds=min(max(args.seconds / 2, 0.2), 30.0), device=args.device)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"MCMC throughput ({res['device']}, {res['threads']} thread(s)), chains x steps per second:")
            for r in res["results"]:
                acc = "" if r["accept_rate"] is None else f"  acceptance {r['accept_rate']:.2f}"
                print(f"  {r['target']:<6} {r['method']:<9} {r['chains']:>7} chains  "
                      f"{r['chain_steps_per_second']:>14,.0f}  ({r['steps_per_second']:,.0f} steps/s){acc}")
        return 0
    cfg, extra = parse_sets(args.model, args.set, {"batch": args.batch, "seed": args.seed})
    settings = TrainSettings.make(**extra)
    args.test_data = None
    data = load_data(args, settings.seed)
    res = bench(args.model, cfg, data, settings, seconds=args.seconds, repeats=args.repeats, device=args.device)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['model']} on {res['dataset']} ({res['device']}, {res['threads']} thread(s)):")
        print(f"  bare      {res['bare_steps_per_second']:.1f} steps/s")
        print(f"  live      {res['live_steps_per_second']:.1f} steps/s with {res['frames_per_second']:.1f} frames/s")
        print(f"  ratio     {res['ratio']:.3f}  (live / bare: frames take <= 10% of the time and held-out "
              "evaluations <= 2%, so >= 0.88)")
        print(f"  a frame   CPU: snapshot {res['frame_snapshot_ms']:.1f} ms + views and encoding "
              f"{res['frame_encode_ms']:.1f} ms; {res['frame_bytes'] / 1024:.1f} KB (median frame update)")
        for k, v in res.get("references", {}).items():
            print(f"  vs {k:<6} {v}")
    return 0


def cmd_bench_diffusion(args) -> int:
    from .bench_diffusion import DATASETS, DIFFUSION, REFERENCE, bench_diffusion, print_diffusion
    from .datasets import DATASETS as KNOWN

    names = [d for arg in (args.datasets or ",".join(DATASETS)).split(",") if (d := arg.strip())]
    bad = [d for d in names if d not in KNOWN]
    if bad:
        raise UsageError(f"unknown dataset(s): {', '.join(bad)} (known: {', '.join(KNOWN)})")
    models = [m.strip() for m in (args.models or ",".join(DIFFUSION + (REFERENCE,))).split(",") if m.strip()]
    for m in models:
        check_model_key(m)
    seconds = 10.0 if args.seconds is None else args.seconds
    if not 0.5 <= seconds <= 3600:
        raise UsageError("--seconds: between 0.5 and 3600 seconds of training per model")
    if not 100 <= args.n <= 200_000:
        raise UsageError("--n: between 100 and 200,000 points")
    res = bench_diffusion(names, seconds=seconds, n=args.n, seed=args.seed or 0, models=tuple(models))
    print(json.dumps(res)) if args.json else print_diffusion(res)
    return 0


def cmd_bench_quality(args) -> int:
    from .bench_quality import print_table, quality

    def names(v):
        return [t.strip() for t in v.split(",") if t.strip()] if v else None

    if args.device == "cuda":
        raise UsageError("bench quality runs on the CPU")
    res = quality(names(args.families), names(args.models), names(args.datasets) or names(args.dataset),
                  steps=args.steps, seeds=args.seeds, seed=args.seed, n=args.n, eval_n=args.eval_n,
                  progress=lambda r: print(f"  done: {r['model']} on {r['dataset']} ({r['seconds']:.0f} s)",
                                           file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps({**res, "rows": [{k: _num(v) for k, v in r.items()} for r in res["rows"]]}))
    else:
        print_table(res)
    return 0


def cmd_sweep(args) -> int:
    from . import sweep

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        check_model_key(m)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise UsageError(f"unknown dataset(s): {', '.join(bad)} (known: {', '.join(DATASETS)})")
    try:
        seeds = sweep.seeds_arg(args.seeds)
    except ValueError:
        raise UsageError(f"--seeds wants '0-9' or '0,3,5', not '{args.seeds}'") from None
    if not models or not datasets or not seeds:
        raise UsageError("a sweep needs at least one model, one dataset and one seed")
    if args.steps < 1 or not 20 <= args.n <= 200_000 or (args.workers is not None and args.workers < 1):
        raise UsageError("--steps must be >= 1, --n in [20, 200000], --workers >= 1")
    sets = {}
    for pair in args.set:
        if "=" not in pair:
            raise UsageError(f"--set expects KEY=V1,V2, got '{pair}'")
        k, v = pair.split("=", 1)
        sets[k.strip()] = [x.strip() for x in v.split(",") if x.strip()]
    for m in models:  # every value valid for every model before anything runs
        for combo in sweep.grid([m], datasets[:1], seeds[:1], 1, sets):
            parse_sets(m, [f"{k}={v}" for k, v in combo["set"].items()], {})
    jobs = sweep.grid(models, datasets, seeds, args.steps, sets, n=args.n)
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise UsageError("--out: a .csv file")
    _check_output(str(out), "--out")
    t0 = time.perf_counter()

    def progress(row):
        print(f"  {row['status']}: {row['model']} on {row['dataset']}, seed {row['seed']}"
              f"{' ' + row['settings'] if row.get('settings') else ''} ({row.get('seconds', 0):.1f} s)",
              file=sys.stderr, flush=True)

    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--ray needs Ray: pip install -r requirements-ray.txt") from None
    counts = sweep.run_sweep(jobs, out, workers=args.workers, progress=progress, ray_address=args.ray)
    rows = sweep.done_rows(out)
    html = out.with_suffix(".html")
    sweep.summary_html(rows, html)
    print(f"{counts['jobs']} runs: {counts['skipped']} already in {out}, {counts['done']} done, {counts['failed']} "
          f"failed, {counts['retried']} taken again after a worker died"
          f"{' (on Ray: Ray retries them)' if args.ray else ''}; {time.perf_counter() - t0:.0f} s. "
          f"Table: {out}  Summary: {html}")
    return 0


def cmd_bench_load(args) -> int:
    try:
        visitors = [int(v) for v in args.visitors.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--visitors wants comma-separated integers, not '{args.visitors}'") from None
    if not visitors or min(visitors) < 1 or max(visitors) > 64:
        raise UsageError("--visitors: between 1 and 64 visitors at once")
    seconds = 8.0 if args.seconds is None else args.seconds
    if not 1 <= seconds <= 600:
        raise UsageError("--seconds: between 1 and 600 for 'load'")
    from . import benchload

    try:
        res = benchload.bench_load(visitors, seconds=seconds, app_dir=args.app_dir, idle=args.idle)
    except benchload.BenchError as err:
        raise UsageError(str(err)) from None
    print(json.dumps(res)) if args.json else benchload.print_load(res)
    return 0


def cmd_bench_web(args) -> int:
    from . import benchweb

    args.seconds = 8.0 if args.seconds is None else args.seconds
    if args.seconds <= 0 or args.frames < 2:
        raise UsageError("--seconds must be > 0 and --frames >= 2")
    if not 1 <= args.pages <= 16:
        raise UsageError("--pages: between 1 and 16 pages at once")
    try:
        if args.model == "browser":
            tabs = [t for arg in args.tab for t in arg.split(",")] or list(benchweb.TABS)
            bad = [t for t in tabs if t not in benchweb.TABS]
            if bad:
                raise UsageError(f"unknown tab(s): {', '.join(bad)} (known: {', '.join(benchweb.TABS)})")
            query = {"model": args.models, "dataset": args.dataset}  # what a link would pick (the tab's own else)
            if args.models and (args.models not in model_keys() or len(tabs) != 1):
                raise UsageError("'browser' with --models: one model key, and one --tab that shows it")
            if args.pages > 1:
                res = benchweb.bench_pages(args.pages, tabs, seconds=args.seconds, app_dir=args.app_dir)
                print(benchweb.to_json(res)) if args.json else benchweb.print_pages(res)
                return 0
            res = benchweb.bench_browser(tabs, seconds=args.seconds, app_dir=args.app_dir,
                                         query={k: v for k, v in query.items() if v})
            print(benchweb.to_json(res)) if args.json else benchweb.print_browser(res)
        else:
            key = args.target or "mog"
            check_model_key(key)
            res = benchweb.bench_frames(key, args.dataset, frames=args.frames)
            print(benchweb.to_json(res)) if args.json else benchweb.print_frames(res)
    except benchweb.BenchError as err:
        raise UsageError(str(err)) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"list": cmd_list, "train": cmd_train, "bench": cmd_bench, "compare": cmd_compare,
                "sweep": cmd_sweep, "sample": cmd_sample, "eval": cmd_eval, "record": cmd_record}[args.cmd](args)
    except (UsageError, DataError, KeyError, ValueError) as err:  # models.ConfigError is a ValueError
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
