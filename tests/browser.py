"""Headless Debian Chromium driven by Selenium, for tests and benchmarks of the HTML report.

The flags keep Chromium off the network (this machine's closed network would otherwise refuse
its background connections, many at a time) and out of any user profile."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = os.environ.get("TTSCALE_CHROMIUM") or next(
        (p for p in CHROMIUM_CANDIDATES if os.path.exists(p)), None) or shutil.which("chromium")
    driver = os.environ.get("TTSCALE_CHROMEDRIVER") or next(
        (p for p in DRIVER_CANDIDATES if os.path.exists(p)), None) or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(timeout_s: float = 300.0) -> Iterator[object]:
    """A headless Chromium driver; ``timeout_s`` bounds a page load or a script, only to stop
    one that will never end (a slow, busy machine takes several times as long as a fast one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("Debian chromium and chromium-driver are not installed: "
                           "run `make install-browser`")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="ttscale-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(timeout_s)
    driver.set_script_timeout(timeout_s)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
