"""End to end: `archbench dashboard` serves the leaderboard to a real (headless) browser.

Starts ``archbench dashboard --db URL --port N`` as a subprocess over a seeded database
(N a free port; when another process takes it before the server binds it, the server
exits and starts again on another), drives Debian's Chromium through chromedriver with
Selenium, waits for the leaderboard, checks the top architecture is on the page and saves a full-page screenshot to
``artifacts/dashboard/leaderboard.png`` (git-ignored; CI can keep it; ``$ARCHBENCH_ARTIFACTS``
moves the folder).  Only a missing Chromium or chromedriver skips it, and not in CI.  With
``ARCHBENCH_UPDATE_SCREENSHOT=1`` the screenshot also replaces ``docs/leaderboard.png``;
``ARCHBENCH_SCREENSHOT_DB=URL`` serves that store instead of a seeded one (the README's
picture comes from a store that ``archbench suite quick`` filled).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, in_ci

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = "needs Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
# CI installs them (.ci/run), so there their absence fails the test instead of skipping it
needs_browser = pytest.mark.skipif((CHROMIUM is None or CHROMEDRIVER is None) and not in_ci(), reason=NO_BROWSER)

ARTIFACTS = Path(os.environ.get("ARCHBENCH_ARTIFACTS") or ROOT / "artifacts") / "dashboard"
WIDTH = 1800  # wide enough for every probe column of the leaderboard
WAIT_S = 180  # generous: a loaded CI machine may take a while to start Streamlit and Chromium


def archbench() -> list[str]:
    """The ``archbench`` console script installed beside this Python, else ``python -m harness``."""
    script = Path(sys.executable).with_name("archbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(Exception):
    """The server could not bind its port: another process took it after free_port() chose it."""


def wait_serving(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Wait until *our* server listens on ``port`` and answers its health check.  Its own
    log line ``URL: http://127.0.0.1:<port>`` (printed once it has bound the port) tells
    it apart from another process that took the port in the meantime."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if proc.poll() is not None:
            if f"Port {port} is not available" in text or "already in use" in text:
                raise PortTaken(text)
            pytest.fail(f"archbench dashboard exited with {proc.returncode}:\n{text}")
        if f"URL: http://127.0.0.1:{port}" in text:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.5)
    pytest.fail(f"the dashboard did not come up in {WAIT_S} s:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and the streamlit server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_dashboard(url: str, workdir: Path, env: dict, ports=None, attempts: int = 5):  # noqa: ANN001, ANN201
    """``archbench dashboard`` serving ``url`` on a free port of 127.0.0.1: ``(process, port,
    log)``.  A port is free when chosen but may be taken before the server binds it; then
    the server exits and the next attempt takes a new port.  ``ports`` (an iterator) picks
    the ports instead of :func:`free_port`."""
    for attempt in range(attempts):
        port = next(ports) if ports is not None else free_port()
        log = workdir / f"dashboard-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*archbench(), "dashboard", "--db", url, "--port", str(port), "--host", "127.0.0.1"],
                                    cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_serving(port, proc, log)
            return proc, port, log
        except PortTaken:
            stop(proc)
        except BaseException:
            stop(proc)
            raise
    pytest.fail(f"the dashboard found no free port in {attempts} attempts")


def test_a_port_taken_before_the_server_binds_it_is_retried(tmp_path, cli_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        proc, port, log = start_dashboard(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path, cli_env,
                                          ports=iter([busy, free_port()]))
        try:
            assert port != busy and log.name == "dashboard-1.log"
            assert f"Port {busy} is not available" in (tmp_path / "dashboard-0.log").read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
                assert r.status == 200
        finally:
            stop(proc)


def browser():  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM is not None and CHROMEDRIVER is not None, NO_BROWSER

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={WIDTH},1000", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def full_page_screenshot(driver, path: Path) -> None:  # noqa: ANN001
    """Grow the window to the height of Streamlit's scrolling main area, then capture."""
    height = driver.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]') || document.scrollingElement;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);")
    driver.set_window_size(WIDTH, min(int(height) + 120, 6000))
    time.sleep(1.5)  # let the table's canvas repaint at the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


@needs_browser
def test_dashboard_serves_the_leaderboard(tmp_path, cli_env):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from harness.queries import scoped_leaderboard
    from harness.store import Store
    from harness.store.synthetic import seed_database

    t0 = time.monotonic()
    url = os.environ.get("ARCHBENCH_SCREENSHOT_DB")
    if not url:
        url = f"sqlite:///{tmp_path / 'results.db'}"
        # 9 architectures x 2 sizes x 19 task settings x 3 learning rates x 3 seeds
        seed_database(url, sizes=[(32, 2, 2), (64, 2, 2)], lrs=[1e-3, 3e-3, 1e-2], seeds=3, curve_points=10)
    store = Store(url, readonly=True)
    top = scoped_leaderboard(store.score_frame())[0].table.iloc[0]["arch"]  # the page's default: latest sweep
    store.close()

    proc, port, _ = start_dashboard(url, tmp_path, cli_env)
    driver = None
    try:
        driver = browser()
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.5)
        metric = wait.until(lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="stMetricValue"]')
                                            if e.text.strip() == top), None))
        assert metric.text.strip() == top
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"] canvas'))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Leaderboard" in body and top in body
        assert "Traceback" not in body
        shot = ARTIFACTS / "leaderboard.png"
        full_page_screenshot(driver, shot)
        assert shot.stat().st_size > 10_000
        if os.environ.get("ARCHBENCH_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "docs" / "leaderboard.png")
        print(f"\nscreenshot: {shot}; end to end {time.monotonic() - t0:.1f} s")
    finally:
        if driver is not None:
            driver.quit()
        stop(proc)
