"""The pilot's ``--pass-credentials``: the payload gets the credential the pilot uses, its file as an absolute path
(a token shipped by HTCondor is named relative to the pilot's working directory; the payload runs in its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autopilot_ops.panda.devserver.testing import DevServer

from .fakes import make_token


def test_the_pilot_passes_its_token_file_as_an_absolute_path(tmp_path: Path) -> None:
    run = tmp_path / "scratch"
    run.mkdir()
    token = make_token(run / "token", 3600)
    files = tmp_path / "files"
    files.mkdir()
    (files / "env.sh").write_text("#!/bin/sh\nenv\n")
    with DevServer(tmp_path / "panda", files_dir=files, auth="token", token=token) as panda:
        [job] = panda.submit_jobs("Q1", 1, f"{panda.url}/env.sh", "")
        env = {k: v for k, v in os.environ.items() if k not in ("X509_USER_PROXY", "PANDA_URL")}
        done = subprocess.run(
            [sys.executable, "-m", "autopilot_ops.pilot", "run", "--queue", "Q1", "--server", panda.url,
             "--token-file", "token", "--origin", "test.example", "--pass-credentials", "--once", "--keep-workdir",
             "--allow-url-prefix", f"{panda.url}/", "--home", str(tmp_path / "home")],
            cwd=run, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert panda.job(job)["status"] == "finished"
    stdout = (run / f"PanDA_Pilot-{job}" / "payload.stdout").read_text()
    seen = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    assert seen["PANDA_AUTH_TOKEN_FILE"] == str(run / "token")
    assert seen["PANDA_AUTH_ORIGIN"] == "test.example"
    assert token not in stdout and token not in done.stdout + done.stderr
