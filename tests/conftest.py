from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no per-example deadline (a shared 2-core machine makes timings noisy), and in CI
# the same examples on every run, so a red build always means a change, never a lucky draw.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parent.parent

#: the key every bundle the tests export is signed with; servers the tests start inherit it
SIGNING_KEY = "workbench-tests-signing-key-0123456789abcdef"
os.environ["WORKBENCH_SIGNING_KEY"] = SIGNING_KEY
os.environ.pop("WORKBENCH_SIGNING_KEY_FILE", None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.duckdb"


def agrawal_config(n: int = 2000, **extra) -> dict:
    """A small synthetic experiment with two learners."""
    config = {
        "name": "small",
        "seed": 7,
        "source": {"kind": "synthetic", "generator": "agrawal", "n": n,
                   "drifts": [{"at": n // 2, "width": 1, "params": {"classification_function": 4}}]},
        "learners": [
            {"name": "lr", "model": "river.linear_model.LogisticRegression",
             "preprocessing": ["river.preprocessing.StandardScaler"]},
            {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"},
        ],
        "metrics": ["accuracy", "log_loss"],
    }
    config.update(extra)
    return config


def minibatch_config(batch_size: int, scaler: bool) -> dict:
    """River's LR (behind a scaler or not) replayed in mini-batches of ``batch_size``."""
    return {
        "name": f"batches-{batch_size}",
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LogisticRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"] if scaler else [],
            }
        ],
        "replay": {"batch_size": batch_size},
        "metrics": ["accuracy", "log_loss", "f1"],
    }


def hold_database(db: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the DuckDB file ``db`` open for ``seconds``, returned once it holds it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep({seconds})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if holder.stdout.readline().strip() != "held":
        holder.kill()
        raise RuntimeError(f"the process meant to hold {db} did not open it")
    return holder


def take(iterable, n):
    return list(itertools.islice(iterable, n))
