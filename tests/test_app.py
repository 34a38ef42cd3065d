"""The app over its API (gradio_client): training streams frames, runs are per visitor."""

import json
import threading

import pytest
from gradio_client import Client

_SCHEMA = {}
LABEL_CSV = "CSV with two numeric columns (header optional)"


def latent_args(client, dataset="8gaussians", K=8, method="em", n=1000, batch=4096, seed=0, **by_label):
    """The /latent_* endpoints' arguments, built from the API's own schema (labels and defaults), so the
    tests follow the tab as it grows; keyword arguments override by widget label."""
    if "params" not in _SCHEMA:
        info = client.view_api(return_format="dict", print_info=False)
        _SCHEMA["params"] = info["named_endpoints"]["/latent_train"]["parameters"]
    noise = {"8gaussians": 0.25, "moons": 0.1}[dataset]
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
            args.append(-2.0)
        else:
            args.append(p.get("parameter_default"))
    missing = set(want) - used
    assert not missing, f"the latent endpoints no longer take {missing}"
    return args


def frames_of(job):
    return [out for out in job]


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def n_components(frame) -> int:
    main = json.loads(frame[1])
    means = [t for t in main["data"] if str(t.get("name", "")).startswith("means")]
    assert len(means) == 1
    x = means[0]["x"]
    return len(x) if isinstance(x, list) else int(len(x["bdata"]) * 3 / 4 / 4)  # f4 typed array


def test_training_streams_frames_and_stops(client):
    job = client.submit(*latent_args(client), api_name="/latent_train")
    seen = []
    for out in job:
        seen.append(out)
        if len(seen) >= 4:
            client.predict(api_name="/latent_stop")
            break
    assert len(seen) >= 4
    statuses = [s[0] for s in seen]
    steps = [int(s.split("step **")[1].split("**")[0].replace(",", "")) for s in statuses if "step **" in s]
    assert steps == sorted(steps) and steps[-1] > steps[0], statuses
    assert "held-out NLL" in statuses[-1]
    assert n_components(seen[-1]) == 8


def test_two_visitors_train_at_once_without_mixing(app_url):
    results = {}

    def visit(name, dataset, K):
        c = Client(app_url, verbose=False)
        job = c.submit(*latent_args(c, dataset=dataset, K=K), api_name="/latent_train")
        frames = []
        for out in job:
            frames.append(out)
            if len(frames) >= 3:
                c.predict(api_name="/latent_stop")
                break
        results[name] = frames

    threads = [threading.Thread(target=visit, args=("a", "8gaussians", 3)),
               threading.Thread(target=visit, args=("b", "moons", 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results["a"]) >= 3 and len(results["b"]) >= 3
    assert all(n_components(f) == 3 for f in results["a"])
    assert all(n_components(f) == 12 for f in results["b"])
    # each visitor's data box stayed its own
    box_a = json.loads(results["a"][-1][1])["layout"]["xaxis"]["range"]
    box_b = json.loads(results["b"][-1][1])["layout"]["xaxis"]["range"]
    assert box_a == [-4, 4] and box_b == [-3.5, 3.5]


def test_bad_upload_is_refused_in_the_status_line(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    args = latent_args(client, source="Upload CSV", **{LABEL_CSV: handle_file(str(bad))})
    out = client.predict(*args, api_name="/latent_step")
    assert "at least 10 rows" in out[0]


def test_step_walks_em(client):
    client.predict(*latent_args(client, K=4), api_name="/latent_reset")
    first = client.predict(*latent_args(client, K=4), api_name="/latent_step")
    second = client.predict(*latent_args(client, K=4), api_name="/latent_step")
    assert "E-step done" in first[0] and "step **0**" in first[0]
    assert "M-step done" in second[0] and "step **1**" in second[0]
