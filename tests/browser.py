"""For the browser tests: headless Chromium (Debian's package) driven by Playwright, and Voilà."""

from __future__ import annotations

import json
import os
import secrets
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
    listed in ``page.outside`` for the test to check; uncaught errors are in ``page.errors``,
    errors logged to the console in ``page.console_errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.outside = []
            page.errors = []
            page.console_errors = []
            page.on("pageerror", lambda exc: page.errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: msg.type == "error" and page.console_errors.append(msg.text),
            )

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
def serving(command: list[str], cwd: Path, env: dict[str, str], log: Path, port: int, timeout=60):
    """``command`` run in ``cwd`` until it listens on 127.0.0.1:``port``, its output in ``log``;
    stopped (and waited for) on exit."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
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
                        f"{command[2]} did not start on port {port}: {log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def voila(notebook: Path, env: dict[str, str], log: Path):
    """Voilà serving ``notebook`` on 127.0.0.1; yields its URL."""
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
    with serving(command, notebook.parent, env, log, port):
        yield f"http://127.0.0.1:{port}/"


#: JupyterLab's page settings for a test: no news or update checks (they would fetch from the
#: internet), no notifications over the notebook
LAB_PAGE_CONFIG = {
    "disabledExtensions": {
        "@jupyterlab/apputils-extension:announcements": True,
        "@jupyterlab/apputils-extension:notification": True,
    }
}


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str], home: Path):
    """JupyterLab on 127.0.0.1 serving ``root``, with its config, data and runtime folders
    under ``home`` (nothing of the user's own set-up) and the app exposed to the page as
    ``window.jupyterapp``, as JupyterLab's own browser tests have it. Yields the lab's URL
    with its token; the server's output is in ``home/lab.log``."""
    port, token = free_port(), secrets.token_hex(16)
    config = home / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(LAB_PAGE_CONFIG))
    env = {
        **env,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with serving(command, root, env, home / "lab.log", port):
        yield f"http://127.0.0.1:{port}/lab", token
