"""For the browser tests: headless Chromium (Debian's package) driven by Playwright, and Voilà."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", shutil.which("chromium"))
        if p and Path(p).exists()
    ),
    None,
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def require_browser():
    """CI installs Chromium (.ci/run): there a missing browser is a failure, elsewhere a skip."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "the playwright package is not installed"
        )
    if CHROMIUM is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "chromium is not installed (apt-get install chromium)"
        )


@contextmanager
def guarded_page(viewport=(1280, 900)):
    """A page whose every request is routed: local ones go through, any other is aborted and
    listed in ``page.outside`` for the test to check."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.outside = []
            page.errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))

            def route(r):
                url = urlparse(r.request.url)
                if url.scheme in ("file", "data", "blob") or url.hostname in LOCAL_HOSTS:
                    r.continue_()
                else:
                    page.outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            yield page
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def voila(notebook: Path, env: dict[str, str], log: Path, timeout: float = 60):
    """Voilà serving ``notebook`` on 127.0.0.1, its output in ``log``; stopped (and waited
    for) on exit."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "voila",
        notebook.name,
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--Voila.port_retries=0",
        "--no-browser",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            cwd=notebook.parent,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"voila did not start on port {port}: {log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
