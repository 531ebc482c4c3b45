"""Every case of the adversarial corpus replays to the end with every record accounted for."""

from __future__ import annotations

import duckdb
import pytest
from adversarial_corpus import CASES, replay


@pytest.mark.parametrize("name", list(CASES))
def test_every_record_is_an_event_a_dead_letter_a_true_duplicate_or_late(name, tmp_path):
    case, got = replay(name, tmp_path)
    assert got["outcome"] == "finished", got
    dead = got["dead"] - got["late"]  # late events are dead letters too (replay.late: dead_letter)
    labelled = got["labelled"] if case.labelled is not None else 0
    assert case.n_in == got["events"] + labelled + got["orphans"] + dead + got["duplicates"] + got["late"]
    assert (got["events"], dead, got["duplicates"], got["late"]) == (
        case.events,
        case.dead,
        case.duplicates,
        case.late,
    )
    assert got["steps"] == got["events"]  # one step per event, each at its own seq
    if case.labelled is not None:
        assert (got["labelled"], got["orphans"]) == (case.labelled, case.orphans)
    assert got["checkpoints"] >= 1  # the final checkpoint is always written
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    letters = con.execute("SELECT origin, reason, raw FROM dead_letters ORDER BY rowid").fetchall()
    assert all(origin and reason for origin, reason, _ in letters)
    if case.reasons is not None:
        reasons = [r for _, r, _ in letters if not r.startswith("late")]
        assert len(reasons) == len(case.reasons)
        for reason, expected in zip(reasons, case.reasons, strict=True):
            assert expected in reason, (expected, reason)
