"""Test helpers: start the FiftyOne App on a free port and drive it with headless Chromium.

Reusable by any test that needs the App in a real browser (pytest puts ``tests/`` on
``sys.path``, so test modules import it as ``browser``)::

    from browser import require_browser, running_app, chromium, wait_for_text

    def test_x(settings, dataset, tmp_path):
        require_browser()
        with running_app(settings, tmp_path) as server, chromium(tmp_path) as driver:
            driver.get(server.dataset_url(dataset.name))
            wait_for_text(driver, "roadwork")  # a label chip in the grid

The App server runs in a child process with the plugins directory of ``settings`` and this
process's ``FIFTYONE_DATABASE_NAME``, so it sees the test database (datasets must be persistent).
Chromium runs with the flags DESIGN.md section 5 found to work on these machines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from curation.app.server import AppServer, child_env, free_port
from curation.settings import Settings

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
INSTALL_HINT = "apt-get install -y chromium chromium-driver fonts-dejavu-core fonts-liberation (or `make test`)"


def _first_existing(candidates: tuple[str, ...], env_var: str) -> str | None:
    if os.environ.get(env_var):
        candidates = (os.environ[env_var],)
    for path in candidates:
        if Path(path).exists():
            return path
    return None


def browser_paths() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths; ``CURATION_CHROMIUM`` / ``CURATION_CHROMEDRIVER`` override."""
    driver = _first_existing(CHROMEDRIVER_CANDIDATES, "CURATION_CHROMEDRIVER") or shutil.which("chromedriver")
    return _first_existing(CHROMIUM_CANDIDATES, "CURATION_CHROMIUM"), driver


def require_browser() -> tuple[str, str]:
    """Skip the calling test, saying what to install, unless Chromium, chromedriver and selenium exist."""
    chromium_path, driver_path = browser_paths()
    missing = [name for name, path in (("chromium", chromium_path), ("chromedriver", driver_path)) if not path]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found; install with: {INSTALL_HINT}")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    return chromium_path, driver_path  # type: ignore[return-value]


@contextlib.contextmanager
def running_app(settings: Settings, log_dir: Path, *, port: int | None = None) -> Iterator[AppServer]:
    """The App server on a free port with the plugins of ``settings``; stopped on exit.

    Its output goes to ``log_dir/app-server.log`` and is shown in the error if it fails to start.
    """
    server = AppServer(
        settings.app_host,
        port or free_port(settings.app_host),
        child_env(settings),
        log_path=Path(log_dir) / "app-server.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chromium(user_data_dir: Path, *, window: tuple[int, int] = (1400, 900)) -> Iterator[Any]:
    """A headless Chromium selenium driver with a fresh profile; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium_path, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = Path(user_data_dir) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.25, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the DOM changes under us while the App renders
            last_error = e
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or condition}{detail}")


def page_text(driver: Any) -> str:
    """Visible text of the page (label chips included; input values such as the dataset selector are not)."""
    return driver.execute_script("return document.body ? document.body.innerText : ''") or ""


def wait_for_text(driver: Any, text: str, *, timeout: float = 30.0) -> str:
    """Wait until ``text`` is in the page's visible text; returns the page text."""
    return wait_until(lambda: text in page_text(driver) and page_text(driver), timeout=timeout, what=repr(text))
