"""The ARC-CE back end against the real A-REX 6.17 of scripts/arc-local.sh (REST on 127.0.0.1, fork LRMS); the condor-ce
back end's route to an ARC CE (through HTCondor's gridmanager) is tested against A-REX 7 in test_condor_arc.py."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.arc import ArcBackend, parse_batch_id
from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus
from autopilot_ops.backends.registry import backend_class

from ..conftest import service_settings
from ..credentials.fakes import make_proxy

#: What A-REX's own job script mangles in an xRSL environment value or argument.
HOSTILE = "a \"quoted\" $value `x` 'y' \\ ; & end"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "arc-local.sh"
pytestmark = pytest.mark.skipif(
    not Path("/usr/share/arc/arc-arex-start").exists() and shutil.which("arcctl") is None,
    reason="ARC is not installed here (scripts/arc-local.sh start installs it)",
)


@pytest.fixture(scope="module")
def arc() -> dict[str, str]:
    """The CE's client settings; the CE must be up (``.ci/run`` starts it)."""
    return service_settings(SCRIPT)


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    return tmp_path / "logs"


def make_backend(arc: dict[str, str], tmp_path: Path, **parameters) -> ArcBackend:
    return ArcBackend("arc-test", {
        "ce": arc["AUTOPILOT_ARC_URL"], "proxy": arc["AUTOPILOT_ARC_PROXY"], "ca_dir": arc["AUTOPILOT_ARC_CA_DIR"],
        "state_dir": str(tmp_path / "state"), "transfer_executable": False, **parameters,
    })


@pytest.fixture
def backend(arc: dict[str, str], tmp_path: Path) -> Iterator[ArcBackend]:
    made = make_backend(arc, tmp_path)
    yield made
    made.close()
    # the fork LRMS leaves a killed job's children behind (see the module docstring): end ours
    subprocess.run(["pkill", "-u", arc["AUTOPILOT_ARC_JOB_USER"], "-f", "autopilot-arc-test-sleep"], check=False)


def spec(log_root: Path, *command: str, **kwargs) -> PilotSpec:
    return PilotSpec(queue="ARC_Q", cycle_id=f"c-{time.monotonic_ns()}", scheduler="t@test", command=command,
                     log_root=log_root, **kwargs)


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(1)


def final_statuses(backend: ArcBackend, ids: list[str]) -> dict[str, PilotStatus]:
    seen: dict[str, PilotStatus] = {}

    def ended() -> bool:
        seen.update(backend.status(ids))
        return all(i in seen and seen[i].state.is_final for i in ids)

    wait_for(ended, f"{ids} to end")
    return seen


def test_registered_under_kind_arc() -> None:
    assert backend_class("arc") is ArcBackend


def test_pilots_run_end_with_their_exit_codes_and_their_logs_come_back(backend, log_root) -> None:
    script = ("printf '%s\\n' \"pilot $AUTOPILOT_PILOT_ID index $AUTOPILOT_PILOT_INDEX as $(id -un) $EXTRA\"; "
              "exit $AUTOPILOT_PILOT_INDEX")
    pilots = backend.submit(3, spec(log_root, "/bin/sh", "-c", script, environment={"EXTRA": HOSTILE}))
    assert [p.index for p in pilots] == [0, 1, 2] and len({p.batch_id for p in pilots}) == 3
    statuses = final_statuses(backend, [p.batch_id for p in pilots])
    assert [statuses[p.batch_id].state for p in pilots] == [PilotState.FINISHED, PilotState.FAILED, PilotState.FAILED]
    assert [statuses[p.batch_id].exit_code for p in pilots] == [0, 1, 2]
    assert "exit code" in (statuses[pilots[1].batch_id].reason or "")
    first = statuses[pilots[0].batch_id]
    assert first.started_at is not None and first.ended_at is not None and first.ended_at >= first.started_at
    for pilot in pilots:
        assert pilot.stdout.read_text().strip() == (
            f"pilot {pilot.batch_id} index {pilot.index} as arcuser {HOSTILE}"
        )
        assert backend.log_paths(pilot.batch_id) == (pilot.stdout, pilot.stderr)
    # cleaned from the CE, and asking again gives the same final answer from the record
    record = json.loads(next((backend.state_dir).glob("*.json")).read_text())
    assert backend.client().diagnose(record["jobs"][0], "status") is None
    assert backend.status([pilots[0].batch_id]) == {pilots[0].batch_id: first}


def test_the_executable_is_uploaded_when_it_is_ours_to_ship(arc, tmp_path, log_root) -> None:
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\necho "shipped $1 $2 in $(basename "$PWD")"\n')
    shipping = make_backend(arc, tmp_path, transfer_executable=True)
    [pilot] = shipping.submit(1, spec(log_root, str(wrapper), "first", "second"))
    assert final_statuses(shipping, [pilot.batch_id])[pilot.batch_id].state is PilotState.FINISHED
    assert pilot.stdout.read_text().startswith("shipped first second in ")


def test_a_cancelled_pilot_ends_cancelled(backend, log_root) -> None:
    [pilot] = backend.submit(1, spec(log_root, "/bin/sh", "-c", "exec -a autopilot-arc-test-sleep sleep 300"))
    wait_for(lambda: backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.RUNNING, "the pilot to run")
    backend.cancel([pilot.batch_id])
    assert final_statuses(backend, [pilot.batch_id])[pilot.batch_id].state is PilotState.CANCELLED


def test_a_crash_between_the_request_and_the_record_is_recovered_from_job_names(backend, log_root) -> None:
    job = spec(log_root, "/bin/true")
    pilots = backend.submit(2, job)
    [record_path] = backend.state_dir.glob("*.json")
    record = json.loads(record_path.read_text())
    ids, record["jobs"] = record["jobs"], None  # as if the process died before it wrote the CE's ids
    record_path.write_text(json.dumps(record))
    assert backend.status([p.batch_id for p in pilots]) == {}, "unknown ids are left out"
    found = backend.find_pilots("ARC_Q", job.cycle_id)
    assert [p.batch_id for p in found] == [p.batch_id for p in pilots]
    assert json.loads(record_path.read_text())["jobs"] == ids
    assert backend.find_pilots("ARC_Q", "another-cycle") == []


def test_a_missing_proxy_names_the_queue_and_the_ce(arc, tmp_path, log_root) -> None:
    broken = make_backend(arc, tmp_path, proxy=str(tmp_path / "no-such-proxy.pem"))
    with pytest.raises(BackendError, match=rf"queue ARC_Q, CE {arc['AUTOPILOT_ARC_URL']}.*does not exist"):
        broken.submit(1, spec(log_root, "/bin/true"))


def test_a_proxy_the_ce_does_not_trust_is_a_clear_error(arc, tmp_path, log_root) -> None:
    stranger = tmp_path / "stranger.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=stranger", "-keyout", str(stranger), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    stranger.write_text(stranger.read_text() + (tmp_path / "cert.pem").read_text())
    refused = make_backend(arc, tmp_path, proxy=str(stranger))
    with pytest.raises(BackendError, match=r"arc back end 'arc-test' \(CE https://localhost:8443/arex\)"):
        refused.submit(1, spec(log_root, "/bin/true"))


def test_a_ce_that_is_down_is_a_clear_error(arc, tmp_path, log_root) -> None:
    down = make_backend(arc, tmp_path, ce="https://127.0.0.1:9/arex")
    with pytest.raises(BackendError, match=r"cannot reach https://127.0.0.1:9/arex/rest/1.0"):
        down.submit(1, spec(log_root, "/bin/true"))


@pytest.mark.parametrize("batch", ["arc-x/../y-1", "slurm-1", "arc--1", "arc-20261202T000000-abcd-z"])
def test_foreign_batch_ids_are_not_ours(batch) -> None:
    assert parse_batch_id(batch) is None


def test_required_parameters_are_named() -> None:
    with pytest.raises(BackendError, match="parameter 'ce' is required"):
        ArcBackend("a", {"proxy": "/p"})
    with pytest.raises(ValueError, match="must be an https:// URL"):
        ArcBackend("a", {"ce": "http://ce.example/arex", "proxy": "/p"})


def test_times_come_from_a_rex_diag() -> None:
    from autopilot_ops.backends.arc import _arc_time

    assert _arc_time("20261202204757Z") == dt.datetime(2026, 12, 2, 20, 47, 57, tzinfo=dt.timezone.utc)
    assert _arc_time("soon") is None


@pytest.mark.parametrize(
    ("rest", "control", "cancelled", "state"),
    [
        ("ACCEPTED", "INLRMS", False, PilotState.RUNNING),  # REST lags: the control directory is current
        ("QUEUING", "INLRMS", False, PilotState.QUEUED),  # in the LRMS but not started yet, as REST says
        ("RUNNING", "FINISHED", False, PilotState.FINISHED),
        ("EXITINGLRMS", "FINISHED", True, PilotState.CANCELLED),
        ("ACCEPTED", "PENDING:PREPARING", False, PilotState.SUBMITTED),
        ("FAILED", None, False, PilotState.FAILED),  # a final REST state needs no second look
        ("KILLED", None, False, PilotState.CANCELLED),
        ("RUNNING", None, False, None),  # gone between the two calls
        ("RUNNING", "DELETED", False, PilotState.MISSED),
    ],
)
def test_the_state_is_the_control_directorys_where_rest_lags(rest, control, cancelled, state) -> None:
    from autopilot_ops.backends.arc import current_state

    assert current_state(rest, control, cancelled) is state


def test_a_rex_stopped_mid_cycle_loses_no_pilot_and_submits_none_twice(backend, log_root) -> None:
    """A-REX goes down with a pilot on it: status and submission fail naming the CE, the failed submission's
    record is settled with no job (nothing to submit again), and once A-REX is back the pilot is followed to
    its end."""
    job = spec(log_root, "/bin/sh", "-c", "sleep 15; echo survived")
    [running] = backend.submit(1, job)
    subprocess.run([str(SCRIPT), "stop"], check=True, capture_output=True)
    try:
        with pytest.raises(BackendError, match="cannot reach"):
            backend.status([running.batch_id])
        lost = spec(log_root, "/bin/true")
        with pytest.raises(BackendError, match="cannot reach"):
            backend.submit(1, lost)
    finally:
        subprocess.run([str(SCRIPT), "start"], check=True, capture_output=True, timeout=300)
    assert backend.find_pilots("ARC_Q", lost.cycle_id) == [], "the CE never got the failed submission's job"
    assert final_statuses(backend, [running.batch_id])[running.batch_id].state is PilotState.FINISHED
    assert running.stdout.read_text().strip() == "survived"


def test_the_queues_proxy_credential_is_the_identity_its_pilots_are_submitted_and_followed_with(arc, tmp_path,
                                                                                               log_root) -> None:
    from autopilot_ops.credentials.model import Credential

    queue_proxy = tmp_path / "queue-proxy.pem"
    shutil.copy2(arc["AUTOPILOT_ARC_PROXY"], queue_proxy)
    without = ArcBackend("arc-test", {"ce": arc["AUTOPILOT_ARC_URL"], "ca_dir": arc["AUTOPILOT_ARC_CA_DIR"],
                                      "state_dir": str(tmp_path / "state"), "transfer_executable": False})
    with pytest.raises(BackendError, match="proxy None does not exist"):
        without.submit(1, spec(log_root, "/bin/true"))
    credential = Credential("proxy", str(queue_proxy))
    [pilot] = without.submit(1, spec(log_root, "/bin/sh", "-c", "echo as queue", credential=credential))
    records = [json.loads(path.read_text()) for path in (tmp_path / "state").glob("*.json")]
    [record] = [r for r in records if r["jobs"]]
    assert record["proxy"] == str(queue_proxy)
    assert final_statuses(without, [pilot.batch_id])[pilot.batch_id].state is PilotState.FINISHED
    assert pilot.stdout.read_text().strip() == "as queue"
    without.close()


def test_an_expired_proxy_is_a_clear_error_naming_the_ce(arc, tmp_path, log_root) -> None:
    expired = tmp_path / "expired.pem"
    make_proxy(expired, lifetime_s=-60, issuer_lifetime_s=-30)  # both ended a minute ago
    with pytest.raises(BackendError, match=r"CE https://localhost:8443/arex\).*(TLS|refused)"):
        make_backend(arc, tmp_path, proxy=str(expired)).submit(1, spec(log_root, "/bin/true"))
