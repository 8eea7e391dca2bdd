"""The web UI in a real headless Chromium: upload two images, generate, and play the video."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vimi.serve.examples import world_examples

CHROMIUM = Path("/usr/bin/chromium")
# Offline, deterministic Chromium: no GPU, no QUIC, no background or first-run traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIDEO_IS_PLAYABLE = """() => {
    const video = document.querySelector('#video video');
    return video !== null && video.error === null && video.readyState >= 1 && video.duration > 0;
}"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is missing: run `make browser`"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"vimi serve exited with code {server.returncode}:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"vimi serve did not answer on {url} within {timeout} s")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GroundedWorld for the examples gallery."""
    from vimi.config import WorldConfig
    from vimi.data.world import build_world

    return build_world(WorldConfig(preset="tiny"), tmp_path_factory.mktemp("world") / "world").out_dir


@pytest.fixture(scope="module")
def server_url(tiny_checkpoint: Path, world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`vimi serve` on a free localhost port, as a user would start it."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio")),
    }
    command = [
        sys.executable,
        "-m",
        "vimi.cli",
        "serve",
        "--checkpoint",
        str(tiny_checkpoint),
        "--port",
        str(port),
    ]
    command += ["--world", str(world_dir), "--device", "cpu"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_upload_two_images_generate_and_play(page, server_url, world_dir, real_photos, tmp_path):
    page.goto(server_url, wait_until="domcontentloaded")
    page.wait_for_selector("#prompt textarea", timeout=60_000)

    # Two slots, two uploads in order: a video that plays.
    page.fill("#prompt textarea", "A <image> spins in <image>")
    page.set_input_files(
        "#images input[type=file]", [str(real_photos["cat.png"]), str(real_photos["astronaut.jpg"])]
    )
    page.get_by_text("astronaut").first.wait_for(timeout=30_000)
    page.fill("#seed input", "5")
    page.click("#generate")
    page.wait_for_selector("#video video", timeout=90_000)
    page.wait_for_function(VIDEO_IS_PLAYABLE, timeout=30_000)
    state = page.evaluate(
        "() => { const v = document.querySelector('#video video');"
        " return {src: v.currentSrc, duration: v.duration, width: v.videoWidth, height: v.videoHeight}; }"
    )
    assert state["duration"] > 0 and (state["width"], state["height"]) == (16, 16)
    assert state["src"].startswith(server_url) and state["src"].endswith(".mp4")
    # The video's URL itself serves an mp4 (what a download or another player would fetch).
    response = page.request.get(state["src"])
    assert response.ok and response.body()[4:8] == b"ftyp"
    status = page.input_value("#status textarea")
    assert "seed 5" in status

    # One slot, two uploads: the page says what is wrong instead of generating.
    page.fill("#prompt textarea", "A <image> spins")
    page.click("#generate")
    page.get_by_text("1 <image> slot(s) but 2 image(s) were uploaded").first.wait_for(timeout=30_000)
    assert page.input_value("#status textarea") == status

    # The examples gallery from GroundedWorld fills the form with a held-out subject prompt.
    page.get_by_text("Examples from GroundedWorld").first.wait_for(timeout=10_000)
    example = world_examples(world_dir)[0]
    page.get_by_text(example.text).first.click()
    page.wait_for_function(
        "text => document.querySelector('#prompt textarea').value === text", arg=example.text, timeout=10_000
    )

    screenshot = tmp_path / "vimi-serve.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
