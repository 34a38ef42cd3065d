"""The app over its API (gradio_client): runs report progress, stop, and stay per visitor."""

import json
import threading

import pytest
from gradio_client import Client

_SCHEMA = {}
LABEL_CSV = "CSV with two numeric columns (header optional)"


def latent_args(client, dataset="8gaussians", K=8, method="em", n=1000, batch=4096, seed=0, **by_label):
    """The /latent_* endpoints' arguments, built from the API's own schema (labels and defaults), so the
    tests follow the tab as it grows; keyword arguments override by widget label (lr: log10 of it)."""
    if "params" not in _SCHEMA:
        info = client.view_api(return_format="dict", print_info=False)
        _SCHEMA["params"] = info["named_endpoints"]["/latent_train"]["parameters"]
    noise = {"8gaussians": 0.25, "moons": 0.1}[dataset]
    lr = by_label.pop("lr", -2.0)
    want = {"source": "Built-in", "dataset": dataset, "number of points": n, "noise": noise,
            "model": "mog", "device": "cpu", "components K": K, "covariance": "full",
            "fitting method": method, "batch size": batch, "seed": seed, **by_label}
    args, used = [], set()
    for p in _SCHEMA["params"]:
        label = p["label"]
        if label in want:
            args.append(want[label])
            used.add(label)
        elif label.startswith("learning rate"):
            args.append(lr)
        else:
            args.append(p.get("parameter_default"))
    missing = set(want) - used
    assert not missing, f"the latent endpoints no longer take {missing}"
    return args


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def info(out) -> dict:
    """The run's state an endpoint returns (its first output, a JSON object)."""
    value = out[0] if isinstance(out, (list, tuple)) else out
    return json.loads(value) if isinstance(value, str) else value


def test_training_reports_progress_and_stops(client):
    """An API client has no page to draw frames: it gets the run's progress once a second, and Stop
    ends the run with its held-out metrics."""
    job = client.submit(*latent_args(client, lr=-3.0, method="gradient"), api_name="/latent_train")
    seen = []
    for out in job:
        seen.append(info(out))
        if len(seen) >= 3:
            client.predict(api_name="/latent_stop")
            break
    final = info(job.result())
    steps = [s["step"] for s in seen] + [final["step"]]
    assert all(s["status"] == "running" for s in seen), seen
    assert steps == sorted(steps) and steps[-1] > steps[0], steps
    assert final["status"] == "stopped" and "test_nll" in final["latest"], final
    assert final["config"]["K"] == 8 and final["model"] == "mog"


def test_two_visitors_train_at_once_without_mixing(app_url):
    results = {}

    def visit(name, dataset, K):
        c = Client(app_url, verbose=False)
        job = c.submit(*latent_args(c, dataset=dataset, K=K), api_name="/latent_train")
        outs = []
        for out in job:
            outs.append(info(out))
            if len(outs) >= 2:
                c.predict(api_name="/latent_stop")
                break
        results[name] = outs + [info(job.result())]

    threads = [threading.Thread(target=visit, args=("a", "8gaussians", 3)),
               threading.Thread(target=visit, args=("b", "moons", 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results["a"]) >= 3 and len(results["b"]) >= 3
    assert all(r["config"]["K"] == 3 and r["dataset"] == "8gaussians" for r in results["a"])
    assert all(r["config"]["K"] == 12 and r["dataset"] == "moons" for r in results["b"])
    assert results["a"][-1]["status"] == results["b"][-1]["status"] == "stopped"


def test_bad_upload_is_refused_with_the_reason(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    args = latent_args(client, source="Upload CSV", **{LABEL_CSV: handle_file(str(bad))})
    out = info(client.predict(*args, api_name="/latent_step"))
    assert "at least 10 rows" in out["error"]


def test_step_walks_em(client):
    client.predict(*latent_args(client, K=4), api_name="/latent_reset")
    first = info(client.predict(*latent_args(client, K=4), api_name="/latent_step"))
    second = info(client.predict(*latent_args(client, K=4), api_name="/latent_step"))
    assert first["message"].startswith("E-step done") and first["step"] == 0
    assert second["message"].startswith("M-step done") and second["step"] == 1


def test_an_idle_visitors_run_is_freed_whole(client):
    """An API visitor never closes a page: once its run sat idle, the app's reaper (release_idle) frees it, and
    nothing else keeps the session alive (the Stop control that the run left on its channel held it before)."""
    import gc

    from playground import visitors
    from playground.session import Session

    job = client.submit(*latent_args(client, lr=-3.0, method="gradient"), api_name="/latent_train")
    for _ in job:
        client.predict(api_name="/latent_stop")
        break
    assert info(job.result())["status"] == "stopped"
    assert visitors.release_idle(idle=0.0) >= 1
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is Session and o.status != "running"]
    assert not alive, f"{len(alive)} idle session(s) still held after release_idle"
