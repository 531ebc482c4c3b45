"""Bundles are signed at export; unsigned or wrongly signed ones are refused before anything in
them is unpickled or resolved, by load, verify-bundle and serve alike."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SIGNING_KEY
from serving import Server, call, config, rehash

import workbench as wb
from workbench.errors import BundleError, ConfigError
from workbench.export import load
from workbench.export.bundle import UnsignedBundleWarning
from workbench.export.service import Service
from workbench.export.signing import key_id, sign_bundle, verify_bundle

WORKBENCH = str(Path(sys.executable).parent / "workbench")
OTHER_KEY = "another-team-signing-key-with-32-bytes-or-more"


class Trap:
    """Unpickling this creates a file: proof that a bundle's pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("signing") / "runs.duckdb"
    return db, wb.run(config(300), db=db, progress=False).id


def trapped(run, folder: Path) -> tuple[Path, Path]:
    db, rid = run
    out = wb.export(rid, "lr", folder / "b", db=db)
    marker = folder / "unpickled"
    rehash(out, "model.pkl", pickle.dumps(Trap(marker)))
    return out, marker


def test_export_signs_and_the_signature_verifies(run, tmp_path):
    db, rid = run
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    record = json.loads((out / "SIGNATURE").read_text())
    assert record["algorithm"] == "hmac-sha256" and record["key_id"] == key_id(SIGNING_KEY.encode())
    assert verify_bundle(out) is True
    assert load(out).learner == "lr"


def test_a_malicious_model_with_recomputed_hashes_never_runs(run, tmp_path):
    out, marker = trapped(run, tmp_path)
    with pytest.raises(BundleError, match=r"signature of .* does not match: it was altered; refusing"):
        load(out)
    with pytest.raises(BundleError, match="does not match"):
        verify_bundle(out, trust_unsigned=True)  # a bad signature is refused even when unsigned is trusted
    cli = subprocess.run([WORKBENCH, "verify-bundle", str(out), "--run", run[1]], capture_output=True, text=True)
    assert cli.returncode == 2 and "does not match: it was altered" in cli.stderr
    with pytest.raises(RuntimeError, match="does not match: it was altered"):
        Server(out, "--trust-unsigned")
    assert not marker.exists()


def test_an_unsigned_bundle_is_refused_unless_trusted(run, tmp_path, monkeypatch):
    db, rid = run
    monkeypatch.delenv("WORKBENCH_SIGNING_KEY")
    with pytest.warns(UnsignedBundleWarning, match="is NOT SIGNED"):
        out = wb.export(rid, "lr", tmp_path / "b", db=db)
    assert not (out / "SIGNATURE").exists()
    marker = tmp_path / "unpickled"
    rehash(out, "model.pkl", pickle.dumps(Trap(marker)))
    for attempt in (lambda: load(out), lambda: Service(out, tmp_path / "state"), lambda: verify_bundle(out)):
        with pytest.raises(BundleError, match=r"is not signed: .*pass --trust-unsigned"):
            attempt()
    cli = subprocess.run(
        [WORKBENCH, "serve", str(out), "--port", "9"], capture_output=True, text=True, env={"PATH": ""}
    )
    assert cli.returncode == 2 and "is not signed" in cli.stderr
    assert not marker.exists()
    load(out, trust_unsigned=True)  # the operator's explicit choice: now it runs
    assert marker.exists()


def test_the_export_command_says_unsigned_and_sign_bundle_signs_later(run, tmp_path):
    db, rid = run
    out = tmp_path / "b"
    env = {"PATH": "", "WORKBENCH_SIGNING_KEY": ""}
    cli = subprocess.run(
        [WORKBENCH, "export", "--run", rid, "--learner", "lr", "-o", str(out), "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert cli.returncode == 0, cli.stderr
    assert "(UNSIGNED)" in cli.stdout and "is NOT SIGNED" in cli.stderr
    cli = subprocess.run([WORKBENCH, "sign-bundle", str(out)], capture_output=True, text=True, env=env)
    assert cli.returncode == 2 and "no signing key" in cli.stderr
    key_file = tmp_path / "key"
    key_file.write_text(SIGNING_KEY + "\n")
    env = {"PATH": "", "WORKBENCH_SIGNING_KEY_FILE": str(key_file)}
    cli = subprocess.run([WORKBENCH, "sign-bundle", str(out)], capture_output=True, text=True, env=env)
    assert cli.returncode == 0 and key_id(SIGNING_KEY.encode()) in cli.stdout
    assert verify_bundle(out) is True  # the test key, from the environment this time
    # A tampered bundle is never signed.
    (out / "model.pkl").write_bytes(b"changed")
    with pytest.raises(BundleError, match="model.pkl does not match its SHA-256"):
        sign_bundle(out)


def test_another_key_or_no_key_here(run, tmp_path, monkeypatch):
    db, rid = run
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    monkeypatch.setenv("WORKBENCH_SIGNING_KEY", OTHER_KEY)
    mine, theirs = key_id(OTHER_KEY.encode()), key_id(SIGNING_KEY.encode())
    with pytest.raises(BundleError, match=f"signed with another key \\({theirs}, this key is {mine}\\)"):
        load(out, trust_unsigned=True)
    monkeypatch.delenv("WORKBENCH_SIGNING_KEY")
    with pytest.raises(BundleError, match=f"is signed \\(key {theirs}\\), but there is no key here"):
        load(out)
    assert load(out, trust_unsigned=True).learner == "lr"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKBENCH_SIGNING_KEY": "short"}, "the signing key is 5 bytes long, too short"),
        ({"WORKBENCH_SIGNING_KEY": "", "WORKBENCH_SIGNING_KEY_FILE": "/nonexistent/key"}, "cannot be read"),
        ({"WORKBENCH_SIGNING_KEY_FILE": "x"}, "both \\$WORKBENCH_SIGNING_KEY and \\$WORKBENCH_SIGNING_KEY_FILE"),
    ],
)
def test_bad_keys_are_refused(run, tmp_path, monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BundleError, match=message):
        wb.export(run[1], "lr", tmp_path / "b", db=run[0])


def test_a_signed_settings_file_still_cannot_run_code(run, tmp_path):
    """Even a bundle signed by the key holder resolves its detector through the allow-list."""
    db, rid = run
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    marker = tmp_path / "ran"
    settings = yaml.safe_load((out / "settings.yaml").read_text())
    settings["drift"] = {
        "detector": "workbench.sources.kafka_dump.glob.os.system",
        "params": {"command": f"touch {marker}"},
    }
    rehash(out, "settings.yaml", yaml.safe_dump(settings).encode())
    sign_bundle(out)
    with pytest.raises(ConfigError, match=r"^settings.yaml: drift.detector: .* is the module 'glob'"):
        Service(out, tmp_path / "state")
    with pytest.raises(RuntimeError, match="settings.yaml: drift.detector"):
        Server(out)
    assert not marker.exists()


def test_a_served_signed_bundle_answers(run, tmp_path):
    db, rid = run
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    server = Server(out)
    try:
        status, health = call(server.url + "/health")
        assert status == 200 and health["status"] == "ok"
    finally:
        server.stop()
