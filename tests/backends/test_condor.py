"""The HTCondor back ends against the real single-node pool of scripts/condor-local.sh.

The pool runs in a chroot that shares only /tmp with the host: the pilots' log root lives under /tmp and
the pilots run as the job owner ``autopilot``, acting through the token the script issues.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import htcondor2
import pytest

from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus, SubmittedPilot
from autopilot_ops.backends.condor import (
    CondorBackend,
    CondorCEBackend,
    condor_arguments,
    grid_pilot_status,
    ids_constraint,
    pilot_status,
    read_condor_env,
)
from autopilot_ops.backends.registry import create_backend
from autopilot_ops.pilot.config import KEPT_DIR_VARIABLE

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "condor-local.sh"
CONDOR_HOME = Path(os.environ.get("AUTOPILOT_CONDOR_HOME", "/var/lib/autopilot-condor"))
JOB_OWNER = os.environ.get("AUTOPILOT_CONDOR_USER", "autopilot")
NEVER_MATCH = {"submit": {"requirements": "False"}}  # pilots that stay idle, whatever the pool offers


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def client_env() -> Path:
    """Start the pool (idempotent: on a running pool it only refreshes the token); skip if it cannot start."""
    if os.geteuid() != 0:
        pytest.skip("scripts/condor-local.sh needs root (it builds a chroot and mounts file systems)")
    done = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"scripts/condor-local.sh start failed: {done.stderr.strip()[-2000:]}")
    return CONDOR_HOME / "client.env"


@pytest.fixture(scope="session")
def log_root() -> Iterator[Path]:
    """A log root under the shared /tmp, which the job owner can traverse."""
    root = Path(tempfile.mkdtemp(prefix="autopilot-condor-tests-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def backend(client_env: Path) -> Iterator[CondorBackend]:
    """A back end acting for the job owner; whatever a test submitted through it is removed afterwards."""
    parameters = {"config_file": str(client_env), "job_owner": JOB_OWNER, "history_s": 600}  # the pool persists
    created = CondorBackend("condor-test", parameters)
    submitted: list[str] = []
    submit = created.submit

    def recording_submit(n: int, pilot_spec: PilotSpec) -> list[SubmittedPilot]:
        pilots = submit(n, pilot_spec)
        submitted.extend(p.batch_id for p in pilots)
        return pilots

    created.submit = recording_submit  # type: ignore[method-assign]
    yield created
    created.cancel(submitted)


def spec(log_root: Path, script: str, queue: str | None = None, **kwargs) -> PilotSpec:
    return PilotSpec(
        queue=queue or f"test-{uuid.uuid4().hex[:8]}",
        cycle_id=kwargs.pop("cycle_id", "cycle-1"),
        scheduler="test",
        command=["/bin/sh", "-c", script],
        log_root=log_root,
        **kwargs,
    )


def statuses_when(backend: CondorBackend, ids: list[str], done: Callable[[PilotStatus], bool], what: str):
    def reached() -> bool:
        statuses = backend.status(ids)
        return len(statuses) == len(ids) and all(done(s) for s in statuses.values())

    wait_for(reached, what)
    return backend.status(ids)


def in_queue(backend: CondorBackend, batch_id: str) -> bool:
    cluster, proc = batch_id.split(".")
    return bool(backend._schedd().query(f"ClusterId == {cluster} && ProcId == {proc}", ["JobStatus"]))


# -- without the pool ---------------------------------------------------------------------------


def test_registered_under_kinds_condor_and_condor_ce() -> None:
    assert type(create_backend("condor", "a")) is CondorBackend
    assert type(create_backend("condor-ce", "b")) is CondorCEBackend


def test_vanilla_description_carries_tags_limits_and_log_paths(tmp_path: Path) -> None:
    backend = CondorBackend("c", {"max_idle_s": 600, "max_held_s": 120, "submit": {"+AccountingGroup": '"pilots"'}})
    pilot = spec(tmp_path, "exit 0", queue="SITE_Q", walltime_s=7200, memory_mb=2000, corecount=8)
    description = backend.submit_description(pilot, tmp_path / "day" / "SITE_Q")
    assert description["universe"] == "vanilla"
    assert description["executable"] == "/bin/sh"
    assert description["arguments"] == "\"'-c' 'exit 0'\""
    assert description["output"] == f"{tmp_path}/day/SITE_Q/$(Cluster).$(Process).out"
    assert description["error"] == f"{tmp_path}/day/SITE_Q/$(Cluster).$(Process).err"
    assert description["+AutoPilotQueue"] == '"SITE_Q"'
    assert description["+AutoPilotCycle"] == '"cycle-1"'
    assert description["+AutoPilotScheduler"] == '"test"'
    assert description["request_cpus"] == "8"
    assert description["request_memory"] == "2000"
    assert description["periodic_hold"] == "JobStatus == 2 && time() - EnteredCurrentStatus > 7200"
    assert description["periodic_remove"] == (
        "(JobStatus == 1 && time() - EnteredCurrentStatus > 600) || "
        "(JobStatus == 5 && time() - EnteredCurrentStatus > 120)"
    )
    assert description["+AccountingGroup"] == '"pilots"'
    assert "grid_resource" not in description


def kept_script(directory: Path, body: str) -> str:
    """A pilot that is a script here, so HTCondor sends it with the job (file transfer)."""
    script = directory / f"pilot-{uuid.uuid4().hex[:8]}.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_under_file_transfer_the_kept_dir_is_in_the_scratch_dir_and_comes_back(tmp_path: Path) -> None:
    kept = {KEPT_DIR_VARIABLE: f"{tmp_path}/kept"}
    backend = CondorBackend("c")
    sent = dataclasses.replace(spec(tmp_path, ""), command=[kept_script(tmp_path, "exit 0")], environment=kept)
    description = backend.submit_description(sent, tmp_path)
    assert description["should_transfer_files"] == "YES"
    assert f"{KEPT_DIR_VARIABLE}='autopilot-kept'" in description["environment"]
    assert description["transfer_output_files"] == "autopilot-kept"
    assert description["transfer_output_remaps"] == '"autopilot-kept = $(Cluster).$(Process).kept"'
    assert backend.returned_kept_dir("12.3", tmp_path / "12.3.out") == tmp_path / "12.3.kept"

    shared = backend.submit_description(spec(tmp_path, "exit 0", environment=kept), tmp_path)  # /bin/sh: no transfer
    assert f"{KEPT_DIR_VARIABLE}='{tmp_path}/kept'" in shared["environment"]
    assert "transfer_output_files" not in shared
    not_asked = backend.submit_description(dataclasses.replace(sent, environment={}), tmp_path)
    assert "transfer_output_files" not in not_asked and KEPT_DIR_VARIABLE not in not_asked["environment"]
    grid = CondorCEBackend("ce", {"ce": "ce01.example.org"}).submit_description(sent, tmp_path)
    assert grid["universe"] == "grid" and "transfer_output_files" not in grid


def test_htcondor_ce_description(tmp_path: Path) -> None:
    backend = CondorCEBackend("ce", {"ce": "ce01.example.org", "ce_queue": "grid", "x509_proxy": "/tmp/x509up"})
    pilot = spec(tmp_path, "exit 0", walltime_s=5400, memory_mb=16000, corecount=8)
    description = backend.submit_description(pilot, tmp_path)
    assert description["universe"] == "grid"
    assert description["grid_resource"] == "condor ce01.example.org ce01.example.org:9619"
    assert description["+remote_jobuniverse"] == "5"
    assert description["+xcount"] == "8"
    assert description["+maxMemory"] == "16000"
    assert description["+maxWallTime"] == "90"
    assert description["+remote_queue"] == '"grid"'
    assert description["x509userproxy"] == "/tmp/x509up"
    assert description["+AutoPilotQueue"] == f'"{pilot.queue}"'

    on_port = CondorCEBackend("ce", {"ce": "ce02.example.org:9620"}).submit_description(pilot, tmp_path)
    assert on_port["grid_resource"] == "condor ce02.example.org ce02.example.org:9620"


def test_arc_ce_description(tmp_path: Path) -> None:
    backend = CondorCEBackend(
        "arc",
        {
            "ce": "https://arc.example.org:443/arex",
            "flavour": "arc",
            "ce_queue": "atlas<long>",
            "arc_rte": ["ENV/PROXY", "APPS/HEP/ATLAS-SITE"],
            "scitokens_file": "/tmp/token",
        },
    )
    description = backend.submit_description(spec(tmp_path, "exit 0"), tmp_path)
    assert description["universe"] == "grid"
    assert description["grid_resource"] == "arc https://arc.example.org:443/arex"
    assert description["arc_resources"] == "<QueueName>atlas&lt;long&gt;</QueueName>"
    assert description["arc_rte"] == "ENV/PROXY,APPS/HEP/ATLAS-SITE"
    assert description["scitokens_file"] == "/tmp/token"
    assert "+remote_jobuniverse" not in description


def test_bad_parameters_and_input_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'ce'"):
        CondorCEBackend("ce", {}).submit_description(spec(tmp_path, "exit 0"), tmp_path)
    with pytest.raises(ValueError, match="flavour"):
        CondorCEBackend("ce", {"ce": "x", "flavour": "cream"}).submit_description(spec(tmp_path, "exit 0"), tmp_path)
    with pytest.raises(ValueError, match="'no-such-pilot-command'"):
        pilot = PilotSpec("Q", "c", "s", ["no-such-pilot-command"], tmp_path)
        CondorBackend("c").submit_description(pilot, tmp_path)
    with pytest.raises(ValueError, match="'bad name'"):
        CondorBackend("c").submit_description(spec(tmp_path, "exit 0", environment={"bad name": "x"}), tmp_path)
    with pytest.raises(ValueError, match="line break"):
        condor_arguments(["a\nb"])


@pytest.mark.parametrize(
    ("attributes", "state", "exit_code", "reason"),
    [
        ({"JobStatus": 1}, PilotState.QUEUED, None, None),
        ({"JobStatus": 2, "JobCurrentStartDate": 1_700_000_000}, PilotState.RUNNING, None, None),
        ({"JobStatus": 3, "RemoveReason": "by hand"}, PilotState.CANCELLED, None, "by hand"),
        ({"JobStatus": 4, "ExitCode": 0, "ExitBySignal": False}, PilotState.FINISHED, 0, None),
        ({"JobStatus": 4, "ExitCode": 82, "ExitBySignal": False}, PilotState.FAILED, 82, "exit code 82"),
        ({"JobStatus": 5, "HoldReason": "over quota"}, PilotState.HELD, None, "over quota"),
        ({"JobStatus": 6}, PilotState.RUNNING, None, None),
        ({"JobStatus": 7}, PilotState.QUEUED, None, "suspended by the execute node"),
    ],
)
def test_job_status_mapping(attributes: dict, state: PilotState, exit_code: int | None, reason: str | None) -> None:
    status = pilot_status(htcondor2.classad.ClassAd({"ClusterId": 1, "ProcId": 0, **attributes}))
    assert (status.state, status.exit_code, status.reason) == (state, exit_code, reason)


def test_a_grid_pilot_whose_ce_is_back_no_longer_says_it_cannot_be_reached() -> None:
    """The gridmanager sets ``GridResourceUnavailableTime`` back to ``Undefined`` when the CE answers again: that
    is no time (it once read as 1970-01-01 00:00:02), so the pilot is plainly queued."""
    grid = {"ClusterId": 1, "ProcId": 0, "JobStatus": 1, "AutoPilotQueue": "Q", "GridResource": "arc https://ce/x"}
    ad = htcondor2.classad.ClassAd(grid)
    ad["GridResourceUnavailableTime"] = htcondor2.classad.ExprTree("Undefined")
    assert grid_pilot_status(ad) == PilotStatus(PilotState.QUEUED)
    ad["GridResourceUnavailableTime"] = 1_700_000_000
    assert grid_pilot_status(ad).reason.startswith(
        "queue Q, CE https://ce/x: the gridmanager cannot reach the CE since 2023-11-14 22:13:20 UTC")


def test_ids_constraint_groups_runs_of_procs() -> None:
    constraint = ids_constraint({(7, 0), (7, 1), (7, 2), (7, 5), (9, 0)})
    assert constraint == (
        "(ClusterId == 7 && ((ProcId >= 0 && ProcId <= 2) || ProcId == 5)) || (ClusterId == 9 && (ProcId == 0))"
    )


def test_client_env_file_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "client.env"
    good.write_text("_CONDOR_CONDOR_HOST=127.0.0.1\nAUTOPILOT_CONDOR_USER=x\n# comment\n_CONDOR_A=b=c\n")
    assert read_condor_env(good) == {"CONDOR_HOST": "127.0.0.1", "A": "b=c"}
    bad = tmp_path / "bad.env"
    bad.write_text("_CONDOR_CONDOR_HOST=1\n_CONDOR_BROKEN\n")
    with pytest.raises(BackendError, match=r"bad\.env line 2"):
        read_condor_env(bad)
    with pytest.raises(BackendError, match=r"missing\.env"):
        read_condor_env(tmp_path / "missing.env")


def test_dead_collector_is_a_backend_error(tmp_path: Path) -> None:
    backend = CondorBackend("dead", {"pool": "127.0.0.1:1"})
    with pytest.raises(BackendError, match=r"'dead'.*127\.0\.0\.1:1"):
        backend.status(["1.0"])
    assert backend.find_pilots("Q1", "c1") is None  # cannot tell: the key stays pending, not missed


# -- against the real pool ----------------------------------------------------------------------


@pytest.mark.condor
def test_log_root_the_job_owner_cannot_reach_is_refused(backend: CondorBackend, tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # like pytest's own /tmp/pytest-of-root: the job owner could not write its logs
    with pytest.raises(BackendError, match=f"job owner '{JOB_OWNER}' cannot enter {tmp_path}"):
        backend.submit(1, spec(tmp_path / "logs", "exit 0"))


@pytest.mark.condor
def test_schedd_chosen_by_name(backend: CondorBackend) -> None:
    name = in_chroot("condor_status", "-schedd", "-af", "Name").split()[0]
    named = CondorBackend("named", {**backend.parameters, "pool": "127.0.0.1", "schedd": name})
    assert named.find_pilots("test-no-such-queue", "c") == []
    unknown = CondorBackend("unknown", {**backend.parameters, "schedd": "no-such-schedd"})
    with pytest.raises(BackendError, match="no schedd named 'no-such-schedd'"):
        unknown.status(["1.0"])


@pytest.mark.condor
def test_one_transaction_idle_running_and_exit_codes(backend: CondorBackend, log_root: Path) -> None:
    gate = log_root / f"go-{uuid.uuid4().hex[:8]}"
    script = f'while [ ! -e {gate} ]; do sleep 0.2; done; echo "out $AUTOPILOT_X"; echo err >&2; exit 3'
    pilot_spec = spec(log_root, script, environment={"AUTOPILOT_X": "it's x"})
    failing = backend.submit(3, pilot_spec)
    cluster = failing[0].batch_id.split(".")[0]
    assert [p.batch_id for p in failing] == [f"{cluster}.{proc}" for proc in range(3)]
    ids = [p.batch_id for p in failing]
    assert all(s.state in (PilotState.QUEUED, PilotState.RUNNING) for s in backend.status(ids).values())

    running = statuses_when(backend, ids, lambda s: s.state is PilotState.RUNNING, "3 pilots to run")
    assert all(s.started_at is not None for s in running.values())
    gate.touch()
    ended = statuses_when(backend, ids, lambda s: s.state.is_final, "3 pilots to end")
    assert {s.state for s in ended.values()} == {PilotState.FAILED}
    assert {s.exit_code for s in ended.values()} == {3}
    assert {s.reason for s in ended.values()} == {"exit code 3"}
    first = failing[0]
    assert first.stdout.read_text() == "out it's x\n"
    assert first.stderr.read_text() == "err\n"
    assert first.stdout == pilot_spec.log_dir() / f"{first.batch_id}.out"
    assert backend.log_paths(first.batch_id) == (first.stdout, first.stderr)

    wait_for(lambda: not in_queue(backend, first.batch_id), "the pilot to leave the queue")
    from_history = backend.status([first.batch_id])[first.batch_id]
    assert from_history.state is PilotState.FAILED and from_history.exit_code == 3
    assert from_history.ended_at is not None and from_history.ended_at >= from_history.started_at
    assert backend.log_paths(first.batch_id) == (first.stdout, first.stderr)


@pytest.mark.condor
def test_success_and_arguments_reach_the_pilot_intact(backend: CondorBackend, log_root: Path) -> None:
    awkward = ["a b", "it's", 'say "hi"', "$(Cluster)", "$HOME", ""]
    script = 'for a in "$@"; do printf "[%s]\\n" "$a"; done'
    pilot = dataclasses.replace(spec(log_root, ""), command=["sh", "-c", script, "sh", *awkward])  # sh: from PATH
    [submitted] = backend.submit(1, pilot)
    ended = statuses_when(backend, [submitted.batch_id], lambda s: s.state.is_final, "the pilot to end")
    assert ended[submitted.batch_id].state is PilotState.FINISHED
    assert ended[submitted.batch_id].exit_code == 0
    assert submitted.stdout.read_text().splitlines() == [f"[{a}]" for a in awkward]


@pytest.mark.condor
def test_the_kept_dir_comes_back_from_the_scratch_dir(backend: CondorBackend, log_root: Path) -> None:
    """HTCondor 23.9 brings the kept dir back whole, renamed per pilot, an empty one too; the job saw it only in
    its scratch dir (the chroot's execute dir, not the shared /tmp)."""
    body = 'echo "$PWD/$AUTOPILOT_KEPT_DIR"; mkdir -p "$AUTOPILOT_KEPT_DIR"\n'
    body += '[ "$AUTOPILOT_PILOT_INDEX" = 0 ] && echo "{}" > "$AUTOPILOT_KEPT_DIR/7.json"; exit 79'
    pilot = dataclasses.replace(
        spec(log_root, ""), command=[kept_script(log_root, body)], environment={KEPT_DIR_VARIABLE: "/nowhere/kept"}
    )
    first, second = backend.submit(2, pilot)
    ended = statuses_when(backend, [first.batch_id, second.batch_id], lambda s: s.state.is_final, "the pilots")
    assert {s.exit_code for s in ended.values()} == {79}, ended
    seen = first.stdout.read_text().strip()
    assert seen.endswith("/autopilot-kept") and not seen.startswith("/tmp/"), seen
    returned = backend.returned_kept_dir(first.batch_id, first.stdout)
    assert [p.name for p in returned.iterdir()] == ["7.json"]
    assert list(backend.returned_kept_dir(second.batch_id, second.stdout).iterdir()) == []


@pytest.mark.condor
def test_cancel_idle_pilots_and_ignore_gone_ones(backend: CondorBackend, log_root: Path) -> None:
    pilots = backend.submit(2, spec(log_root, "exit 0", parameters=NEVER_MATCH))
    ids = [p.batch_id for p in pilots]
    assert {s.state for s in backend.status(ids).values()} == {PilotState.QUEUED}
    backend.cancel(ids)
    cancelled = statuses_when(backend, ids, lambda s: s.state is PilotState.CANCELLED, "2 pilots cancelled")
    assert all("AutoPilot: cancelled" in (s.reason or "") for s in cancelled.values())
    backend.cancel([*ids, "999999.0", "not-an-id"])  # already gone, never there, or not ours: no error
    assert backend.status(["999999.0", "999999.1", "not-an-id"]) == {}


@pytest.mark.condor
def test_a_pilot_killed_by_a_signal(backend: CondorBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "kill -9 $$"))
    status = statuses_when(backend, [pilot.batch_id], lambda s: s.state.is_final, "the pilot to end")[pilot.batch_id]
    assert status.state is PilotState.FAILED
    assert status.exit_code is None and status.reason == "killed by signal 9"


@pytest.mark.condor
def test_walltime_holds_then_held_limit_removes(backend: CondorBackend, log_root: Path) -> None:
    """The submit description's own limits, evaluated by the pool (every 2 s in scripts/condor-local.sh)."""
    [pilot] = backend.submit(1, spec(log_root, "sleep 300", walltime_s=1, parameters={"max_held_s": 4}))
    held = statuses_when(backend, [pilot.batch_id], lambda s: s.state is PilotState.HELD, "the walltime hold")
    assert held[pilot.batch_id].reason == "AutoPilot: ran longer than 1 s"
    gone = statuses_when(backend, [pilot.batch_id], lambda s: s.state is PilotState.CANCELLED, "the held-limit removal")
    assert "PeriodicRemove" in (gone[pilot.batch_id].reason or "")


@pytest.mark.condor
def test_held_apart_from_idle_then_removed_past_timeout(backend: CondorBackend, log_root: Path) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    held = backend.submit(1, spec(log_root, "exit 0", queue=queue, parameters=NEVER_MATCH))
    idle = backend.submit(1, spec(log_root, "exit 0", queue=queue, parameters=NEVER_MATCH))
    held_id, idle_id = held[0].batch_id, idle[0].batch_id
    backend._schedd().act(htcondor2.JobAction.Hold, [held_id], reason=("test hold", None))
    statuses = statuses_when(backend, [held_id], lambda s: s.state is PilotState.HELD, "the pilot to be held")
    assert "test hold" in (statuses[held_id].reason or "")
    assert backend.status([idle_id])[idle_id].state is PilotState.QUEUED

    assert backend.remove_held(3600, queue=queue) == []  # held for seconds only
    removed: list[str] = []
    wait_for(lambda: bool(removed.extend(backend.remove_held(0, queue=queue)) or removed), "remove_held(0)")
    assert removed == [held_id]
    final = statuses_when(backend, [held_id], lambda s: s.state is PilotState.CANCELLED, "the held pilot removed")
    assert "held for more than 0 s" in (final[held_id].reason or "")
    assert backend.status([idle_id])[idle_id].state is PilotState.QUEUED


@pytest.mark.condor
def test_find_pilots_by_tags_ignores_other_tags_and_other_owners(
    backend: CondorBackend, log_root: Path, client_env: Path
) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    ours = backend.submit(2, spec(log_root, "exit 0", queue=queue, cycle_id="c1", parameters=NEVER_MATCH))
    backend.submit(1, spec(log_root, "exit 0", queue=queue, cycle_id="c2", parameters=NEVER_MATCH))
    backend.submit(1, spec(log_root, "exit 0", cycle_id="c1", parameters=NEVER_MATCH))  # another queue
    foreign = submit_as_other_owner(client_env, queue, "c1")
    try:
        assert backend._schedd().query(f"ClusterId == {foreign}", ["Owner"])[0]["Owner"] == "nobody"
        found = backend.find_pilots(queue, "c1")
        assert found == ours
        assert backend.find_pilots(queue, "c3") == []
        for pilot in ours:  # one left in the queue, one in the history; then both in the history
            backend.cancel([pilot.batch_id])
            wait_for(lambda pilot=pilot: not in_queue(backend, pilot.batch_id), "the pilot to leave the queue")
            assert backend.find_pilots(queue, "c1") == ours
    finally:
        other_owner(client_env, "remove", foreign)


@pytest.mark.condor
def test_ce_description_is_accepted_by_a_real_schedd(backend: CondorBackend, log_root: Path) -> None:
    """Submitted on hold to the local schedd, never sent to a CE: the job ad shows what the CE would get."""
    ce = CondorCEBackend("ce", {**backend.parameters, "ce": "ce01.example.invalid", "ce_queue": "grid"})
    pilot = spec(log_root, "exit 0", walltime_s=3600, corecount=4, parameters={"submit": {"hold": "True"}})
    [submitted] = ce.submit(1, pilot)
    try:
        ad = backend._ads_by_id(
            [submitted.batch_id],
            [
                "ClusterId",
                "ProcId",
                "JobUniverse",
                "GridResource",
                "remote_jobuniverse",
                "xcount",
                "maxWallTime",
                "remote_queue",
                "AutoPilotQueue",
                "PeriodicHold",
            ],
        )[submitted.batch_id]
        assert ad["JobUniverse"] == 9  # grid
        assert ad["GridResource"] == "condor ce01.example.invalid ce01.example.invalid:9619"
        assert (ad["remote_jobuniverse"], ad["xcount"], ad["maxWallTime"]) == (5, 4, 60)
        assert ad["remote_queue"] == "grid"
        assert ad["AutoPilotQueue"] == pilot.queue
        assert backend.status([submitted.batch_id])[submitted.batch_id].state is PilotState.HELD
    finally:
        backend.cancel([submitted.batch_id])


# -- another job owner, in a separate process (HTCondor caches one security session per process) -----

_OTHER_OWNER = """
import json, sys
import htcondor2
action, arg = sys.argv[1], sys.argv[2]
schedd = htcondor2.Schedd(htcondor2.Collector().locate(htcondor2.DaemonType.Schedd))
if action == "submit":
    queue, cycle = json.loads(arg)
    description = {"executable": "/bin/true", "hold": "True", "initialdir": "/tmp",
                   "+AutoPilotQueue": json.dumps(queue), "+AutoPilotCycle": json.dumps(cycle)}
    print(schedd.submit(htcondor2.Submit(description), count=1).cluster())
else:
    schedd.act(htcondor2.JobAction.Remove, arg, reason=("test cleanup", None))
"""


def other_owner(client_env: Path, action: str, arg: str, owner: str = "nobody") -> str:
    token_dir = Path(tempfile.mkdtemp(prefix="autopilot-condor-other-"))
    try:
        domain = in_chroot("condor_config_val", "UID_DOMAIN").strip()
        token = in_chroot("condor_token_create", "-identity", f"{owner}@{domain}")
        (token_dir / owner).write_text(token)
        (token_dir / owner).chmod(0o600)  # HTCondor ignores token files others can read
        env = {**os.environ, **{f"_CONDOR_{k}": v for k, v in read_condor_env(client_env).items()}}
        env["_CONDOR_SEC_TOKEN_DIRECTORY"] = str(token_dir)
        done = subprocess.run(
            [sys.executable, "-c", _OTHER_OWNER, action, arg], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    finally:
        shutil.rmtree(token_dir)


def in_chroot(*argv: str) -> str:
    """Run a command in the pool's chroot, with a clean environment (htcondor2 sets CONDOR_CONFIG here)."""
    done = subprocess.run(
        ["chroot", str(CONDOR_HOME / "root"), *argv],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def submit_as_other_owner(client_env: Path, queue: str, cycle: str) -> str:
    return other_owner(client_env, "submit", json.dumps([queue, cycle]))


@pytest.mark.condor
def test_each_pilot_gets_its_batch_id_and_index_in_the_environment(backend: CondorBackend, log_root: Path) -> None:
    pilots = backend.submit(2, spec(log_root, 'echo "$AUTOPILOT_PILOT_ID $AUTOPILOT_PILOT_INDEX"'))
    ids = [p.batch_id for p in pilots]
    statuses_when(backend, ids, lambda s: s.state.is_final, "the pilots to end")
    assert [p.stdout.read_text().strip() for p in pilots] == [f"{p.batch_id} {p.index}" for p in pilots]
    assert [p.index for p in pilots] == [0, 1]
