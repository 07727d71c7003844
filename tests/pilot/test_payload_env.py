"""The payload's environment: the allow-list of the pilot's variables plus the job's identity, no secrets."""

from __future__ import annotations

QUEUE = "LOCAL_QUEUE"


def test_payload_gets_the_allow_list_only(panda, pilot, make_script, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    monkeypatch.setenv("PANDA_AUTH_TOKEN_FILE", str(token))
    monkeypatch.setenv("AUTOPILOT_MONITOR_TOKEN_FILE", str(token))
    monkeypatch.setenv("SOME_SITE_SECRET", "hush")
    monkeypatch.setenv("LC_ALL", "C")
    trf = make_script("env.sh", "env\n")
    job_id = panda.submit_jobs(QUEUE, 1, str(trf), "")[0]
    result = pilot.run(panda.url, "--keep-workdir")
    assert result.returncode == 0, result.stderr
    assert panda.job(job_id)["status"] == "finished"
    stdout = (pilot.root / "work" / f"PanDA_Pilot-{job_id}" / "payload.stdout").read_text()
    names = {line.split("=", 1)[0] for line in stdout.splitlines() if "=" in line}
    assert not names & {"PANDA_AUTH_TOKEN_FILE", "AUTOPILOT_MONITOR_TOKEN_FILE", "SOME_SITE_SECRET"}
    assert "secret-token" not in stdout and "hush" not in stdout
    assert {"PATH", "HOME", "LC_ALL", "PANDAID", "PANDA_WORKDIR"} <= names
    assert f"PANDAID={job_id}" in stdout.splitlines()
