"""Credentials through the real Slurm cluster: the batch script names the file on the shared file system, the
pilot reads it there, and the script slurmctld keeps holds the path, never the value."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from autopilot_ops.backends.slurm import SlurmBackend
from autopilot_ops.credentials.model import Credential

from ..credentials.fakes import make_proxy, make_token
from .test_slurm import backend, final_statuses, log_root, pytestmark, spec  # noqa: F401 (fixtures, marks)


def test_the_pilot_reads_the_token_by_its_path(backend: SlurmBackend, log_root: Path, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "panda-token"
    token = make_token(path, 3600)
    script = 'sha256sum < "$PANDA_AUTH_TOKEN_FILE"; echo "$PANDA_AUTH_TOKEN_FILE $PANDA_AUTH_ORIGIN"; sleep 2'
    [pilot] = backend.submit(1, spec(log_root, script, credential=Credential("token", str(path), "test.example")))
    job_id = pilot.batch_id.split("_")[0]
    kept = subprocess.run(["scontrol", "write", "batch_script", job_id, "-"], capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert f"export PANDA_AUTH_TOKEN_FILE={path}" in kept.stdout
    assert token not in kept.stdout and token.rsplit(".", 1)[1] not in kept.stdout
    [status] = final_statuses(backend, [pilot.batch_id]).values()
    assert status.exit_code == 0, pilot.stderr.read_text()
    digest, named = pilot.stdout.read_text().splitlines()[:2]
    assert digest.split()[0] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert named == f"{path} test.example"


def test_a_proxy_is_x509_user_proxy(backend: SlurmBackend, log_root: Path, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "x509up"
    make_proxy(path, 3600)
    credential = Credential("proxy", str(path), pass_to_payload=True)
    [pilot] = backend.submit(1, spec(log_root, 'test -r "$X509_USER_PROXY" && env', credential=credential))
    [status] = final_statuses(backend, [pilot.batch_id]).values()
    assert status.exit_code == 0, pilot.stderr.read_text()
    env = dict(line.split("=", 1) for line in pilot.stdout.read_text().splitlines() if "=" in line)
    assert (env["X509_USER_PROXY"], env["AUTOPILOT_PASS_CREDENTIALS"]) == (str(path), "1")
    assert "PANDA_AUTH_TOKEN_FILE" not in env
