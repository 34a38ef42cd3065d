"""Shared fixtures: deterministic torch, a running app, and a headless Chromium."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("PLAYGROUND_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

torch.set_num_threads(1)


@pytest.fixture
def float64():
    """torch's default dtype float64 for the test (Jacobians and round trips checked to 1e-8), restored after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """The whole app, launched once for the test session on a free port."""
    import app as app_module
    from playground import tabkit

    tabkit.MAX_RUN_SECONDS = 20.0  # a run that nobody stops still ends
    demo = app_module.build_app()
    kw = app_module.launch_kwargs()
    kw.update(server_port=free_port(), server_name="127.0.0.1")
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    yield url.rstrip("/")
    demo.close()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright. Browser tests are required: without
    Chromium they fail with how to install it (PLAYGROUND_SKIP_BROWSER=1 skips them locally)."""
    if os.environ.get("PLAYGROUND_SKIP_BROWSER") == "1":
        pytest.skip("PLAYGROUND_SKIP_BROWSER=1")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium) "
                    "or set PLAYGROUND_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
    pg = ctx.new_page()
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
