"""The condor-ce back end's ARC flavour for real: pilots go to the schedd of the HTCondor pool (scripts/condor-local.sh,
HTCondor 23.9 in a Debian 13 chroot), whose gridmanager's arc_gahp submits them over ARC REST, with a delegated
proxy, to the real A-REX 7 of scripts/arc7-local.sh (fork LRMS, in its own Debian 13 chroot, on 127.0.0.1).

Not to the A-REX 6.17 of scripts/arc-local.sh: its delegation request is a version-2 CSR, which OpenSSL 3.5's
X509_REQ_verify refuses ("unsupported version"), so the gahp PUTs an empty delegation and A-REX holds nothing but a
500 (scripts/arc7-local.sh says where in both sources).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.arc_rest import ArcRestClient
from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus, SubmittedPilot
from autopilot_ops.backends.condor import CondorCEBackend
from autopilot_ops.credentials.model import Credential

from ..conftest import service_is_up, service_settings
from ..credentials.fakes import make_proxy

REPO = Path(__file__).resolve().parents[2]
ARC7_SCRIPT = REPO / "scripts" / "arc7-local.sh"
ARC_SCRIPT = REPO / "scripts" / "arc-local.sh"
CONDOR_ROOT = Path("/var/lib/autopilot-condor/root")
CONDOR_ENV = Path("/var/lib/autopilot-condor/client.env")
#: What an environment value keeps through HTCondor's environment string, then A-REX's ADL and job script.
HOSTILE = "a 'quoted' value ; & | < > \\ end"

pytestmark = [
    pytest.mark.condor,
    pytest.mark.skipif(not CONDOR_ENV.exists(), reason="the HTCondor pool of scripts/condor-local.sh is not set up"),
    pytest.mark.skipif(not service_is_up(ARC7_SCRIPT), reason="the A-REX 7 of scripts/arc7-local.sh is not running"),
]


def job_owner() -> str:
    return CONDOR_ENV.read_text().split("AUTOPILOT_CONDOR_USER=")[-1].split()[0]


def trust_the_test_ca(ca_dir: Path) -> None:
    """The CE's CA (certificates and signing policies, never its key) where the chroot's arc_gahp looks for
    trust anchors, X509_CERT_DIR's default."""
    certificates = CONDOR_ROOT / "etc" / "grid-security" / "certificates"
    certificates.mkdir(parents=True, exist_ok=True)
    for item in ca_dir.iterdir():
        if item.suffix in (".pem", ".signing_policy", ".0") and not item.name.endswith("-key.pem"):
            shutil.copy2(item.resolve(), certificates / item.name)


def shared_copy(source: Path, shared: Path) -> Path:
    """A copy of a proxy in ``shared``, owned by the job owner, as HTCondor wants to read it."""
    copy = shared / source.name
    shutil.copy2(source, copy)
    copy.chmod(0o600)
    shutil.chown(copy, job_owner())
    return copy


@pytest.fixture(scope="module")
def arc7() -> dict[str, str]:
    settings = service_settings(ARC7_SCRIPT)
    trust_the_test_ca(Path(settings["AUTOPILOT_ARC7_CA_DIR"]))
    return settings


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory under the host's /tmp (the chroots' /tmp too) that the job owner owns."""
    root = Path(tempfile.mkdtemp(prefix="autopilot-condor-arc-", dir="/tmp"))
    root.chmod(0o755)
    shutil.chown(root, job_owner())
    yield root
    shutil.rmtree(root, ignore_errors=True)


def make_backend(arc7: dict[str, str], proxy: Path | None, **parameters) -> CondorCEBackend:
    return CondorCEBackend("ce-arc", {
        "config_file": str(CONDOR_ENV), "job_owner": job_owner(), "history_s": 600, "flavour": "arc",
        "ce": arc7["AUTOPILOT_ARC7_URL"] + "/rest/1.0", **({"x509_proxy": str(proxy)} if proxy else {}),
        **parameters,
    })


def spec(shared: Path, *command: str, **kwargs) -> PilotSpec:
    return PilotSpec(queue="ARC_GRID", cycle_id=f"c-{time.monotonic_ns()}", scheduler="t@test", command=command,
                     log_root=shared / "logs", **kwargs)


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(2)


def status_of(backend: CondorCEBackend, batch_id: str) -> PilotStatus | None:
    return backend.status([batch_id]).get(batch_id)


def ce_job_id(backend: CondorCEBackend, batch_id: str) -> str | None:
    """The A-REX job id the gridmanager recorded (``GridJobId`` is ``arc <REST URL> <id>``), once it has one."""
    ad = backend._ads_by_id([batch_id], ["ClusterId", "ProcId", "GridJobId"]).get(batch_id)
    grid_job_id = ad.get("GridJobId") if ad is not None else None
    return str(grid_job_id).split()[-1] if isinstance(grid_job_id, str) else None


def runs_on_the_ce(arex: ArcRestClient, backend: CondorCEBackend, batch_id: str) -> bool:
    """A-REX's own current state of the pilot's job is INLRMS (REST's state, and so HTCondor's, lag behind it)."""
    job_id = ce_job_id(backend, batch_id)
    return job_id is not None and "INLRMS" in (arex.diagnose(job_id, "status") or "")


def final_statuses(backend: CondorCEBackend, ids: list[str], timeout_s: float = 300) -> dict[str, PilotStatus]:
    seen: dict[str, PilotStatus] = {}

    def ended() -> bool:
        seen.update(backend.status(ids))
        return all(i in seen and seen[i].state.is_final for i in ids)

    wait_for(ended, f"{ids} to end (last seen: {seen})", timeout_s)
    return seen


def test_pilots_run_on_the_ce_as_its_mapped_user_end_with_their_exit_codes_and_their_logs_come_back(
        arc7, shared) -> None:
    """HTCondor delegates the proxy (A-REX 7's version-0 CSR), submits ADL with the pilot's environment, follows
    the jobs and fetches their stdout back into the log root."""
    backend = make_backend(arc7, shared_copy(Path(arc7["AUTOPILOT_ARC7_PROXY"]), shared))
    script = ("printf '%s\\n' \"pilot $AUTOPILOT_PILOT_ID index $AUTOPILOT_PILOT_INDEX as $(id -un) $EXTRA\"; "
              "exit $AUTOPILOT_PILOT_INDEX")
    submitted = time.monotonic()
    pilots = backend.submit(3, spec(shared, "/bin/sh", "-c", script, environment={"EXTRA": HOSTILE}))
    assert [p.index for p in pilots] == [0, 1, 2]
    statuses = final_statuses(backend, [p.batch_id for p in pilots])
    print(f"3 pilots through HTCondor to A-REX 7, submit to all ended: {time.monotonic() - submitted:.0f} s")
    assert [statuses[p.batch_id].state for p in pilots] == [PilotState.FINISHED, PilotState.FAILED, PilotState.FAILED]
    assert [statuses[p.batch_id].exit_code for p in pilots] == [0, 1, 2]
    for pilot in pilots:
        assert pilot.stdout.read_text().strip() == (
            f"pilot {pilot.batch_id} index {pilot.index} as {arc7['AUTOPILOT_ARC7_JOB_USER']} {HOSTILE}"
        )


def test_the_queues_proxy_credential_is_the_one_delegated(arc7, shared) -> None:
    """With no proxy of its own, the back end submits with the queue's proxy credential."""
    backend = make_backend(arc7, None)
    queue_proxy = shared_copy(Path(arc7["AUTOPILOT_ARC7_PROXY"]), shared)
    [pilot] = backend.submit(1, spec(shared, "/bin/sh", "-c", "echo as queue",
                                     credential=Credential("proxy", str(queue_proxy))))
    assert final_statuses(backend, [pilot.batch_id])[pilot.batch_id].state is PilotState.FINISHED
    assert pilot.stdout.read_text().strip() == "as queue"


def test_a_proxy_the_ce_does_not_trust_keeps_the_pilot_queued_saying_why_naming_the_queue_and_the_ce(
        arc7, shared) -> None:
    """The CE's TLS refuses a stranger's certificate, so the gridmanager's ping fails and it marks the CE
    unavailable; the pilot stays idle (HTCondor keeps trying) and its status says why."""
    stranger = shared / "stranger.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=stranger", "-keyout", str(shared / "key.pem"), "-out", str(stranger)],
                   check=True, capture_output=True)
    stranger.write_text(stranger.read_text() + (shared / "key.pem").read_text())
    stranger.chmod(0o600)
    shutil.chown(stranger, job_owner())
    backend = make_backend(arc7, stranger)
    [pilot] = backend.submit(1, spec(shared, "/bin/true"))
    try:
        seen: dict[str, PilotStatus] = {}

        def explained() -> bool:
            seen.update(backend.status([pilot.batch_id]))
            return bool(pilot.batch_id in seen and seen[pilot.batch_id].reason)

        wait_for(explained, "the pilot's status to say why it waits", 90)
        status = seen[pilot.batch_id]
        assert status.state is PilotState.QUEUED
        assert status.reason.startswith(f"queue ARC_GRID, CE {arc7['AUTOPILOT_ARC7_URL']}/rest/1.0: ")
        assert "with proxy /CN=stranger: the CE is down or does not accept this proxy" in status.reason
    finally:
        backend.cancel([pilot.batch_id])


def test_an_environment_value_a_rex_would_mangle_is_refused_naming_the_variable(arc7, shared) -> None:
    backend = make_backend(arc7, shared_copy(Path(arc7["AUTOPILOT_ARC7_PROXY"]), shared))
    with pytest.raises(ValueError, match=r"environment variable EXTRA holds \$ `, which A-REX's job script mangles"):
        backend.submit(1, spec(shared, "/bin/true", environment={"EXTRA": "costs $5 `now`"}))


@pytest.mark.skipif(not service_is_up(ARC_SCRIPT), reason="the A-REX 6.17 of scripts/arc-local.sh is not running")
def test_on_a_rex_6_17_the_pilot_is_held_for_its_delegation_naming_the_queue_and_the_ce(arc7, shared) -> None:
    """6.17's version-2 delegation CSR fails the gahp's X509_REQ_verify, it PUTs an empty delegation, A-REX answers
    500, and HTCondor holds the job: the held pilot's reason says so, naming the queue and that CE."""
    arc = service_settings(ARC_SCRIPT)
    backend = make_backend(arc7, shared_copy(Path(arc["AUTOPILOT_ARC_PROXY"]), shared),
                           ce=arc["AUTOPILOT_ARC_URL"] + "/rest/1.0")
    [pilot] = backend.submit(1, spec(shared, "/bin/true"))
    try:
        seen: dict[str, PilotStatus] = {}

        def held() -> bool:
            seen.update(backend.status([pilot.batch_id]))
            return pilot.batch_id in seen and seen[pilot.batch_id].state is PilotState.HELD

        wait_for(held, "the grid job to be held", 90)
        assert seen[pilot.batch_id].reason.startswith(f"queue ARC_GRID, CE {arc['AUTOPILOT_ARC_URL']}/rest/1.0: ")
        assert seen[pilot.batch_id].reason.endswith(": HTTP response 500")  # all the gahp tells of it
    finally:
        backend.cancel([pilot.batch_id])


def test_a_missing_proxy_is_a_clear_error_naming_the_queue_and_the_ce(arc7, shared) -> None:
    backend = make_backend(arc7, shared / "no-such-proxy.pem")
    with pytest.raises(BackendError, match=(rf"condor-ce back end 'ce-arc' \(queue ARC_GRID, CE "
                                            rf"{arc7['AUTOPILOT_ARC7_URL']}/rest/1.0\): proxy .*no-such-proxy.pem "
                                            r"does not exist")):
        backend.submit(1, spec(shared, "/bin/true"))


def test_an_expired_proxy_is_refused_before_htcondor_takes_a_pilot_naming_the_queue_and_the_ce(arc7, shared) -> None:
    """HTCondor itself would take the pilots and leave the gridmanager to fail on the proxy."""
    expired = shared / "expired.pem"
    make_proxy(expired, lifetime_s=-60, issuer_lifetime_s=-30)  # both ended a minute ago
    backend = make_backend(arc7, expired)
    job = spec(shared, "/bin/true")
    ce = re.escape(arc7["AUTOPILOT_ARC7_URL"] + "/rest/1.0")
    when = r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    with pytest.raises(BackendError, match=(rf"condor-ce back end 'ce-arc' \(queue ARC_GRID, CE {ce}\): proxy "
                                            rf"{re.escape(str(expired))} expired at {when}$")):
        backend.submit(1, job)
    assert backend.find_pilots("ARC_GRID", job.cycle_id) == [], "the schedd got no pilot"


def test_a_cancelled_pilot_is_killed_on_the_ce_and_cleaned_from_it(arc7, shared) -> None:
    """The gridmanager's cancel is A-REX's ``action=kill`` then ``action=clean``: the pilot ends cancelled and the
    CE no longer knows its job."""
    proxy = shared_copy(Path(arc7["AUTOPILOT_ARC7_PROXY"]), shared)
    backend = make_backend(arc7, proxy)
    [pilot] = backend.submit(1, spec(shared, "/bin/sh", "-c", "sleep 600 # autopilot-condor-arc-kill"))
    arex = ArcRestClient(arc7["AUTOPILOT_ARC7_URL"], str(proxy), verify=arc7["AUTOPILOT_ARC7_CA_FILE"])
    try:
        wait_for(lambda: runs_on_the_ce(arex, backend, pilot.batch_id), "the pilot to run on the CE", 180)
        job_id = ce_job_id(backend, pilot.batch_id)
        backend.cancel([pilot.batch_id])
        wait_for(lambda: getattr(status_of(backend, pilot.batch_id), "state", None) is PilotState.CANCELLED,
                 "the pilot to end cancelled", 120)
        wait_for(lambda: arex.diagnose(job_id, "status") is None, f"A-REX to clean job {job_id}", 60)
    finally:
        arex.close()
        # the fork LRMS's kill leaves the job's children running (see the arc back end's docstring): end ours
        subprocess.run(["pkill", "-u", arc7["AUTOPILOT_ARC7_JOB_USER"], "-f", "autopilot-condor-arc-kill"],
                       check=False)


def test_a_rex_stopped_mid_cycle_each_pilot_runs_once_and_both_are_followed_to_their_end(arc7, shared) -> None:
    """A-REX stops with one pilot running on it, and a second is submitted once the gridmanager has found the CE
    down: the schedd takes the second, whose status says the CE cannot be reached; once A-REX is back, the
    gridmanager follows the first to its end and submits the second, and each ran exactly once."""
    runs = shared / "runs"
    runs.mkdir()
    runs.chmod(0o1777)  # the CE's mapped user writes here
    backend = make_backend(arc7, shared_copy(Path(arc7["AUTOPILOT_ARC7_PROXY"]), shared))
    record = f"echo $AUTOPILOT_PILOT_ID >> {runs}/ran"
    [first] = backend.submit(1, spec(shared, "/bin/sh", "-c", f"{record}; sleep 30; echo survived"))
    arex = ArcRestClient(arc7["AUTOPILOT_ARC7_URL"], arc7["AUTOPILOT_ARC7_PROXY"],
                         verify=arc7["AUTOPILOT_ARC7_CA_FILE"])
    try:
        wait_for(lambda: runs_on_the_ce(arex, backend, first.batch_id), "the first pilot to run on the CE", 180)
    finally:
        arex.close()
    subprocess.run([str(ARC7_SCRIPT), "stop"], check=True, capture_output=True, timeout=120)
    try:

        def unreachable(pilot: SubmittedPilot) -> Callable[[], bool]:
            def check() -> bool:
                status = status_of(backend, pilot.batch_id)
                return status is not None and "the gridmanager cannot reach the CE" in (status.reason or "")
            return check

        # once the gridmanager knows (a pilot submitted before it does is held for the failed connection instead)
        wait_for(unreachable(first), "the first pilot's status to say the CE cannot be reached", 60)
        [second] = backend.submit(1, spec(shared, "/bin/sh", "-c", f"{record}; echo late"))
        wait_for(unreachable(second), "the second pilot's status to say the CE cannot be reached", 60)
        assert status_of(backend, second.batch_id).state is PilotState.QUEUED
    finally:
        subprocess.run([str(ARC7_SCRIPT), "start"], check=True, capture_output=True, timeout=300)
    statuses = final_statuses(backend, [first.batch_id, second.batch_id])
    assert [statuses[p.batch_id].state for p in (first, second)] == [PilotState.FINISHED, PilotState.FINISHED]
    assert (first.stdout.read_text().strip(), second.stdout.read_text().strip()) == ("survived", "late")
    assert sorted((runs / "ran").read_text().split()) == sorted([first.batch_id, second.batch_id])
