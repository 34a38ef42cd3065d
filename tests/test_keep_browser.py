"""Keeping a run, as a user does it in the browser: record while training, export the animation, save the model,
reset, resume it from the file and train on; a bad file is refused with its reason."""

import time

import pytest
import torch
from live_helpers import SLOW, click, status, step_of, wait_panel, wait_status

from playground import saving

pytestmark = pytest.mark.browser


def _download(page, button: str, artifacts, name: str, says: str | None = None):
    """Click an export button, wait for its file to be offered (and the note to say `says`), and download it."""
    click(page, button)
    if says:
        page.wait_for_function("(t) => document.querySelector('#flows-keepmsg').innerText.includes(t)", arg=says,
                               timeout=SLOW)
    link = page.locator("#flows-keepfile a").first
    link.wait_for(state="visible", timeout=SLOW)
    with page.expect_download(timeout=SLOW) as dl:
        link.click()
    path = artifacts / name
    dl.value.save_as(str(path))
    return path


def _upload(page, path) -> None:
    with page.expect_file_chooser(timeout=SLOW) as chooser:
        page.locator("#flows-resume").click()
    chooser.value.set_files(str(path))


@pytest.mark.slow  # trains twice for a few seconds
def test_record_export_save_reset_resume(page, app_url, artifacts, tmp_path):
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    page.get_by_role("tab", name="Normalizing flows").click()
    wait_panel(page, "flows-plot-main", "p.frames >= 1")
    page.locator("#flows-keep").click()  # open the keep row
    page.locator("#flows-record input").check()
    page.wait_for_function("() => document.querySelector('#flows-keepmsg').innerText.includes('Recording')")
    click(page, "#flows-train")
    wait_panel(page, "flows-plot-main", "p.frames >= 8")
    time.sleep(1.0)
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")
    step = step_of(status(page, "flows"))
    assert step > 0

    html = _download(page, "#flows-animhtml", artifacts, "flows-animation.html")
    text = html.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in text or "Plotly.react" in text
    assert text.count('"name":') >= 3  # frames
    assert "frames (steps" in page.locator("#flows-keepmsg").inner_text()
    try:
        import imageio_ffmpeg
    except ImportError:  # the optional video extra (requirements-video.txt): the button says what to install
        click(page, "#flows-animmp4")
        page.wait_for_function("() => document.querySelector('#flows-keepmsg').innerText.includes('imageio-ffmpeg')",
                               timeout=SLOW)
    else:
        video = _download(page, "#flows-animmp4", artifacts, "flows-animation.mp4", says="MP4 video")
        reader = imageio_ffmpeg.read_frames(str(video))
        assert next(reader)["size"][0] > 100 and sum(1 for _ in reader) >= 8

    saved = _download(page, "#flows-save", artifacts, "flows-model.pt")
    blob = saving.read(saved)
    assert blob["key"] == "realnvp" and blob["step"] == step
    assert f"at step {step}" in page.locator("#flows-keepmsg").inner_text()

    click(page, "#flows-reset")
    page.wait_for_function("() => document.querySelector('#flows-status').innerText.includes('reset')")
    _upload(page, saved)
    page.wait_for_function(f"() => document.querySelector('#flows-keepmsg').innerText.includes('step {step}')",
                           timeout=SLOW)
    wait_status(page, "flows", f"at step {step:,}")
    click(page, "#flows-train")
    page.wait_for_function(f"""() => {{
        const m = document.querySelector('#flows-status').innerText.match(/step ([\\d,]+)/);
        return m && +m[1].replaceAll(',', '') > {step} + 20; }}""", timeout=SLOW)
    click(page, "#flows-stop")
    wait_status(page, "flows", "stopped")

    # a file that is not a model: refused, the run kept
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    _upload(page, bad)
    page.wait_for_function("() => document.querySelector('#flows-keepmsg').innerText.includes('could not resume')",
                           timeout=SLOW)
    assert "not a playground model file" in page.locator("#flows-keepmsg").inner_text()
    page.locator("#flows-keep").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "keep.png"), full_page=False)
