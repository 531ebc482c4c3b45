"""``workbench deploy``: the update service and N replicas on one machine, as separate processes.

Each part is the command a user would start on its own host (``workbench learner CONFIG``,
``workbench serve --store URL ...``). A part that dies is started again (it resumes: the update
service from its last published version and committed offsets, a replica from the store's
current version). SIGINT or SIGTERM stops every part with SIGTERM, then waits for it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from workbench.production.config import DeployConfig

#: seconds a part gets to stop after SIGTERM before it is killed
STOP_SECONDS = 20.0
RESTART_DELAY = 1.0
#: what a part exits with when its configuration is wrong: starting it again would not help
EXIT_USAGE = 2


def commands(cfg: DeployConfig, config_file: Path) -> dict[str, list[str]]:
    """The command line of every part, by name."""
    cli = [sys.executable, "-m", "workbench.cli"]
    parts = {"learner": [*cli, "learner", str(config_file)]}
    for i in range(cfg.replicas):
        command = [*cli, "serve", "--store", cfg.store, "--host", cfg.host, "--port", str(cfg.port + i)]
        if cfg.predictions:
            command += ["--predictions-topic", cfg.predictions, "--bootstrap-servers", cfg.bootstrap_servers]
        if cfg.ab is not None:
            command += ["--ab-b", str(cfg.ab.b), "--ab-split", str(cfg.ab.split)] + (
                ["--ab-shadow"] if cfg.ab.shadow else []
            )
        if cfg.trust_unsigned:
            command.append("--trust-unsigned")
        parts[f"replica-{i}"] = command
    return parts


def deploy(cfg: DeployConfig, stop: threading.Event | None = None) -> int:
    """Run every part until SIGINT/SIGTERM (or ``stop``); restart parts that die."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    state = Path(cfg.db).parent
    state.mkdir(parents=True, exist_ok=True)
    config_file = state / f"deploy-{Path(cfg.bundle).name}.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    parts = commands(cfg, config_file)
    procs = {name: subprocess.Popen(command) for name, command in parts.items()}
    urls = ", ".join(f"http://{cfg.host}:{cfg.port + i}" for i in range(cfg.replicas))
    print(f"workbench deploy: update service and {cfg.replicas} replicas ({urls}); store {cfg.store}", flush=True)
    code = 0
    try:
        while not stop.wait(0.5):
            for name, proc in procs.items():
                if proc.returncode == EXIT_USAGE or proc.poll() == EXIT_USAGE:
                    print(f"workbench deploy: {name} refused its configuration; stopping", flush=True)
                    stop.set()
                    code = EXIT_USAGE
                    break
                if proc.poll() is not None:
                    print(f"workbench deploy: {name} exited ({proc.returncode}); starting it again", flush=True)
                    time.sleep(RESTART_DELAY)
                    procs[name] = subprocess.Popen(parts[name])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print("workbench deploy: stopped", flush=True)
    return code
