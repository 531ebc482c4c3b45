"""Reading a database while a replay in another process writes it: read snapshots.

DuckDB lets one process write a file and no other process open it meanwhile, not even
read-only ("Conflicting lock"). So a replay's writer publishes a *read snapshot* next to the
file (``runs/workbench.duckdb.snapshot``): a consistent copy, taken between two batches and
swapped in atomically, that other processes open read-only. The writer takes one only when a
reader asks (by touching ``….snapshot-wanted``), at most once a second, so a replay nobody
watches never copies the file; it removes both files when the run ends. A reader never blocks the
replay, and sees the record as of at most about a second before it asked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

#: seconds between two snapshots while someone reads
EVERY = 1.0
#: a reader that has not asked for this long is gone: no more snapshots until one asks again
READERS_GONE = 10.0
#: how long a reader waits for a fresher snapshot before it reads the one there is
WAIT = 2.0


def _paths(path: str) -> tuple[Path, Path]:
    return Path(path + ".snapshot"), Path(path + ".snapshot-wanted")


class Publisher:
    """The writer's side: between batches, ``publish()`` a snapshot when one is ``due()``."""

    def __init__(self, path: str, checkpoint: Callable[[], None]):
        """``checkpoint()`` writes the log into the file (the writer's, with room for it)."""
        self.checkpoint = checkpoint
        self.snapshot, self.wanted = _paths(path)
        self.last: float | None = None
        # DuckDB's lock on the file is a POSIX lock, which a process loses when it closes *any*
        # descriptor of the file: so the file is opened once, read through this descriptor,
        # and closed only after DuckDB has closed it (close()).
        self._fd = os.open(path, os.O_RDONLY)

    def due(self) -> bool:
        """Whether a reader asked for a snapshot and the last one is older than EVERY."""
        now = time.time()
        try:
            asked = self.wanted.stat().st_mtime
        except FileNotFoundError:
            return False
        return now - asked <= READERS_GONE and (self.last is None or now - self.last >= EVERY)

    def publish(self) -> None:
        self.last = time.time()
        try:
            self.checkpoint()  # everything in the file itself, nothing in the WAL
            partial = self.snapshot.with_name(f"{self.snapshot.name}.{os.getpid()}.partial")
            with open(partial, "wb") as out:
                offset = 0
                while chunk := os.pread(self._fd, 1 << 20, offset):
                    out.write(chunk)
                    offset += len(chunk)
            os.replace(partial, self.snapshot)
        except (duckdb.Error, OSError):
            pass  # a snapshot is a courtesy to readers: never a reason to stop the replay

    def close(self) -> None:
        """After DuckDB's connection is closed: the descriptor, the snapshot and the request."""
        os.close(self._fd)
        for path in (self.snapshot, self.wanted):
            path.unlink(missing_ok=True)


def connect(path: str) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection to the snapshot of ``path`` (None if none comes within ``WAIT``
    s: whoever holds the file is not a replay), fresh to within about a second when the writer
    keeps up."""
    snapshot, wanted = _paths(path)
    asked = time.time()
    try:
        published = snapshot.stat().st_mtime
    except FileNotFoundError:
        published = None
    if published is None or asked - published > EVERY:
        wanted.touch()
        deadline = asked + WAIT
        while time.time() < deadline:
            time.sleep(0.05)
            try:
                if published is None or snapshot.stat().st_mtime > published:
                    published = snapshot.stat().st_mtime
                    break
            except FileNotFoundError:  # none yet, or the run has ended and removed it
                continue
        if published is None:  # no replay answered: whoever holds the file is not one
            wanted.unlink(missing_ok=True)
            return None
    try:
        return duckdb.connect(str(snapshot), read_only=True)
    except duckdb.IOException:  # removed as the run ended
        return None
