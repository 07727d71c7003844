"""The rucio mover against the real Rucio of scripts/rucio-local.sh (PyPI rucio 41.5.1 on 127.0.0.1, a POSIX RSE):
inputs put there by Rucio's own client come back checked, outputs and the log land on the RSE registered in the
job's dataset with the report's GUID and adler32, a whole pilot job ends ``finished`` on the dev server, and each
failure carries pilot3's error code."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest

from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.job import parse_job
from autopilot_ops.pilot.movers.base import TransferError
from autopilot_ops.pilot.movers.rucio import RucioMover, check_replica, parse_url
from autopilot_ops.pilot.staging import output_report, stage_in, stage_out_file

from ..conftest import service_settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rucio-local.sh"
INPUT_URL = "rucio://{scope}/{lfn}?rse={rse}"
OUTPUT_URL = "rucio://{scope}/{lfn}?rse={rse}&dataset={dataset}&guid={guid}"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex}"  # the server keeps every file of earlier runs


@pytest.fixture(scope="module")
def rucio(tmp_path_factory) -> dict[str, str]:
    """The server's settings, with ``RUCIO_CONFIG`` set for this process (and the pilots it starts) to a copy of
    its client configuration whose token file stays in a temporary dir."""
    settings = service_settings(SCRIPT)
    home = tmp_path_factory.mktemp("rucio-client")
    config = home / "rucio.cfg"
    original = Path(settings["AUTOPILOT_RUCIO_CLIENT_CONFIG"]).read_text()
    config.write_text(f"{original.rstrip()}\nauth_token_file_path = {home / 'token' / 'auth_token'}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUCIO_CONFIG", str(config))  # read once per process by Rucio's client
        patch.setenv("TMPDIR", str(home))
        yield {**settings, "config": str(config)}


@pytest.fixture(scope="module")
def client(rucio):
    from rucio.client import Client

    return Client()


def upload(rucio, path: Path) -> None:
    """Put ``path`` into Rucio with Rucio's own upload client, as a data manager would."""
    from rucio.client.uploadclient import UploadClient

    item = {"path": str(path), "rse": rucio["AUTOPILOT_RUCIO_RSE"], "did_scope": rucio["AUTOPILOT_RUCIO_SCOPE"]}
    UploadClient(logger=logging.getLogger("test-upload")).upload([{**item, "register_after_upload": True}])


@pytest.fixture
def inputs(rucio, tmp_path) -> list[tuple[str, bytes]]:
    """Two files in Rucio: ``(lfn, content)``."""
    files = []
    for index in (1, 2):
        lfn = unique(f"in{index}") + ".dat"
        data = os.urandom(1000 * index) + lfn.encode()
        (tmp_path / lfn).write_bytes(data)
        upload(rucio, tmp_path / lfn)
        files.append((lfn, data))
    return files


def make_job(rucio, inputs=(), outputs=(), log=None, checksums=None, rse_in="", rse_out=""):
    """A PanDA job dict with ``inputs`` (``(lfn, content)``), ``outputs`` and ``log`` in the test scope."""
    scope = rucio["AUTOPILOT_RUCIO_SCOPE"]
    dataset = unique("autopilot.test.dataset")
    outs = [*outputs, *([log] if log else [])]
    return parse_job(
        {
            "PandaID": 17,
            "transformation": "/bin/true",
            "inFiles": ",".join(lfn for lfn, _ in inputs),
            "scopeIn": ",".join(scope for _ in inputs),
            "GUID": ",".join(str(uuid.uuid4()) for _ in inputs),
            "fsize": ",".join(str(len(data)) for _, data in inputs),
            "checksum": ",".join(checksums or [f"ad:{adler32(data)}" for _, data in inputs]),
            "ddmEndPointIn": ",".join(rse_in for _ in inputs),
            "outFiles": ",".join(outs),
            "scopeOut": ",".join(scope for _ in outputs),
            "realDatasets": ",".join(dataset for _ in outs),
            "destinationDblock": ",".join(dataset for _ in outs),
            "ddmEndPointOut": ",".join(rse_out for _ in outs),
            **({"logFile": log, "scopeLog": scope, "logGUID": str(uuid.uuid4())} if log else {}),
        }
    )


def stage_out(job, workdir: Path, options=None):
    staged = [stage_out_file(spec, workdir / spec.lfn, OUTPUT_URL, options=options) for spec in job.output_files]
    return [*staged, stage_out_file(job.log_file, workdir / job.log_file.lfn, OUTPUT_URL, options=options)]


def traces_sent(rucio) -> int:
    """How many traces the server has been sent (its gunicorn access log, beside the client configuration)."""
    access_log = Path(rucio["AUTOPILOT_RUCIO_CLIENT_CONFIG"]).parents[1] / "log" / "gunicorn-access.log"
    return access_log.read_text().count("POST /traces/")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_stage_in_and_out_of_a_job_registers_its_files_in_its_dataset(rucio, client, inputs, tmp_path):
    rse, scope = rucio["AUTOPILOT_RUCIO_RSE"], rucio["AUTOPILOT_RUCIO_SCOPE"]
    outputs, log = [unique("out1") + ".dat", unique("out2") + ".dat"], unique("job") + ".log.tgz"
    job = make_job(rucio, inputs, outputs, log, rse_in=rse, rse_out=rse)
    workdir = tmp_path / "work"
    workdir.mkdir()
    traces_before = traces_sent(rucio)
    paths = stage_in(job, workdir, INPUT_URL)
    assert [path.read_bytes() for path in paths] == [data for _, data in inputs]
    assert not [entry for entry in workdir.iterdir() if entry.name.startswith(".rucio-")], "no scratch dir left"
    for index, lfn in enumerate([*outputs, log]):
        (workdir / lfn).write_bytes(os.urandom(2000 + index) + lfn.encode())
    staged = stage_out(job, workdir)
    report = json.loads(output_report(staged))
    assert set(report) == {*outputs, log}
    assert report[log]["guid"] == job.log_file.guid  # PanDA's logGUID is the one registered
    dataset = job.output_files[0].dataset
    files = {item["name"]: item for item in client.list_files(scope, dataset)}
    assert set(files) == {*outputs, log}
    assert {item["name"] for item in client.list_content(scope, dataset)} == {*outputs, log}
    for lfn, entry in report.items():
        data = (workdir / lfn).read_bytes()
        assert (entry["fsize"], entry["adler32"]) == (len(data), adler32(data))
        assert files[lfn]["guid"].lower() == entry["guid"].replace("-", "")
        assert (files[lfn]["bytes"], files[lfn]["adler32"]) == (len(data), adler32(data))
        (replica,) = client.list_replicas([{"scope": scope, "name": lfn}], rse_expression=rse)
        assert replica["states"] == {rse: "AVAILABLE"}
        (pfn,) = replica["rses"][rse]
        assert Path(pfn.removeprefix("file://localhost")).read_bytes() == data, "the bytes are on the RSE's disk"
    assert traces_sent(rucio) == traces_before, "the mover sends Rucio no traces (pilot3's tracing_rucio = False)"


def test_a_pilot_runs_a_job_through_rucio_and_the_dev_server_accepts_its_report(
    rucio, client, inputs, panda, pilot, make_script
):
    rse, scope = rucio["AUTOPILOT_RUCIO_RSE"], rucio["AUTOPILOT_RUCIO_SCOPE"]
    (in1, data1), (in2, data2) = inputs
    out1, out2 = unique("out1") + ".dat", unique("out2") + ".dat"
    trf = make_script("reco.sh", f'cat {in1} {in2} > "$1"; cat {in2} > "$2"\n')
    job_id = panda.submit_jobs(
        "LOCAL_QUEUE",
        1,
        str(trf),
        f"{out1} {out2}",
        out_files=[out1, out2],
        in_files=[
            {"lfn": lfn, "scope": scope, "fsize": len(data), "checksum": f"ad:{adler32(data)}"} for lfn, data in inputs
        ],
        label=scope,
    )[0]
    # The dev server sends no ddmEndPointOut (it has no site mapper), so the queue's RSE is the mover's option.
    result = pilot.run(panda.url, "--input-url", INPUT_URL, "--output-url", OUTPUT_URL, "--mover-option", f"rse={rse}")
    assert result.returncode == 0, result.stderr[-3000:]
    job = panda.job(job_id)
    assert job["status"] == "finished", (job["pilot_error_code"], job["pilot_error_diag"])
    report = json.loads(job["job_output_report"])
    log_lfn = next(f["lfn"] for f in job["files"] if f["type"] == "log")
    assert set(report) == {out1, out2, log_lfn}
    dataset = next(f["dataset"] for f in job["files"] if f["type"] == "output")
    registered = {item["name"]: item for item in client.list_files(scope, dataset)}
    assert set(registered) == set(report)
    expected = {out1: data1 + data2, out2: data2}
    for item in job["files"]:
        if item["type"] == "input":
            continue
        lfn, entry = item["lfn"], report[item["lfn"]]
        assert item["status"] == "ready" and item["GUID"] == entry["guid"], "the dev server's adder took the report"
        assert registered[lfn]["guid"].lower() == entry["guid"].replace("-", "")
        assert (registered[lfn]["bytes"], registered[lfn]["adler32"]) == (entry["fsize"], entry["adler32"])
        if lfn in expected:
            assert (entry["fsize"], entry["adler32"]) == (len(expected[lfn]), adler32(expected[lfn]))


def test_an_input_with_another_checksum_than_pandas_fails_getadmismatch(rucio, inputs, tmp_path):
    job = make_job(rucio, inputs[:1], checksums=["ad:00000001"])
    with pytest.raises(JobFailure) as failure:
        stage_in(job, tmp_path, INPUT_URL)
    assert failure.value.code == errorcodes.GETADMISMATCH == 1171


def test_a_corrupt_replica_fails_rucios_validation_with_getadmismatch(rucio, client, inputs, tmp_path):
    (lfn, data), scope = inputs[0], rucio["AUTOPILOT_RUCIO_SCOPE"]
    (replica,) = client.list_replicas([{"scope": scope, "name": lfn}])
    (pfn,) = replica["rses"][rucio["AUTOPILOT_RUCIO_RSE"]]
    Path(pfn.removeprefix("file://localhost")).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(JobFailure, match="Checksum validation failed") as failure:
        stage_in(make_job(rucio, inputs[:1]), workdir, INPUT_URL)
    assert failure.value.code == errorcodes.GETADMISMATCH
    assert not list(workdir.iterdir()), "neither the bad copy nor a scratch dir is left"


def test_a_missing_input_fails_missinginputfile(rucio, tmp_path):
    job = make_job(rucio, [(unique("never-uploaded") + ".dat", b"x")])
    with pytest.raises(JobFailure, match=r"FILE_NOT_FOUND|No available sources") as failure:
        stage_in(job, tmp_path, INPUT_URL)
    assert failure.value.code == errorcodes.MISSINGINPUTFILE == 1331


def test_an_unknown_rse_fails_nostorage(rucio, inputs, tmp_path):
    with pytest.raises(JobFailure, match="NO_SUCH_RSE") as failure:
        stage_in(make_job(rucio, inputs[:1], rse_in="NO_SUCH_RSE"), tmp_path, INPUT_URL)
    assert failure.value.code == errorcodes.NOSTORAGE == 1133
    job = make_job(rucio, outputs=[unique("out") + ".dat"], log=unique("job") + ".log.tgz", rse_out="NO_SUCH_RSE")
    (tmp_path / job.output_files[0].lfn).write_bytes(b"output")
    with pytest.raises(JobFailure, match="NO_SUCH_RSE") as failure:
        stage_out_file(job.output_files[0], tmp_path / job.output_files[0].lfn, OUTPUT_URL)
    assert failure.value.code == errorcodes.NOSTORAGE


def test_no_rse_at_all_fails_nostorage(rucio, tmp_path):
    job = make_job(rucio, outputs=[unique("out") + ".dat"])
    (tmp_path / job.output_files[0].lfn).write_bytes(b"output")
    with pytest.raises(JobFailure, match="ddmEndPointOut") as failure:
        stage_out_file(job.output_files[0], tmp_path / job.output_files[0].lfn, OUTPUT_URL)
    assert failure.value.code == errorcodes.NOSTORAGE


def test_an_output_already_in_rucio_fails_fileexists(rucio, tmp_path):
    rse = rucio["AUTOPILOT_RUCIO_RSE"]
    job = make_job(rucio, outputs=[unique("out") + ".dat"], rse_out=rse)
    spec = job.output_files[0]
    (tmp_path / spec.lfn).write_bytes(b"first")
    stage_out_file(spec, tmp_path / spec.lfn, OUTPUT_URL)
    (tmp_path / spec.lfn).write_bytes(b"second")
    with pytest.raises(JobFailure, match="already exists") as failure:
        stage_out_file(spec, tmp_path / spec.lfn, OUTPUT_URL)
    assert failure.value.code == errorcodes.FILEEXISTS == 1221


def test_a_replica_other_than_the_local_file_fails_putadmismatch(rucio, client, inputs, tmp_path):
    (lfn, data), rse = inputs[0], rucio["AUTOPILOT_RUCIO_RSE"]
    did = parse_url(f"rucio://{rucio['AUTOPILOT_RUCIO_SCOPE']}/{lfn}")
    replicas = list(client.list_replicas([{"scope": did.scope, "name": did.name}], rse_expression=rse))
    local = tmp_path / lfn
    local.write_bytes(data)
    check_replica(local, replicas, did, rse)
    local.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    with pytest.raises(TransferError, match="adler32") as failure:
        check_replica(local, replicas, did, rse)
    assert failure.value.code == errorcodes.PUTADMISMATCH == 1172


def test_the_server_down_fails_rucioserviceunavailable(rucio, inputs, tmp_path):
    down = {"rucio_host": f"http://127.0.0.1:{closed_port()}"}
    with pytest.raises(JobFailure, match="Cannot connect") as failure:
        stage_in(make_job(rucio, inputs[:1]), tmp_path, INPUT_URL, options=down)
    assert failure.value.code == errorcodes.RUCIOSERVICEUNAVAILABLE == 1316
    job = make_job(rucio, outputs=[unique("out") + ".dat"], rse_out=rucio["AUTOPILOT_RUCIO_RSE"])
    (tmp_path / job.output_files[0].lfn).write_bytes(b"output")
    with pytest.raises(JobFailure, match="Cannot connect") as failure:
        stage_out_file(job.output_files[0], tmp_path / job.output_files[0].lfn, OUTPUT_URL, options=down)
    assert failure.value.code == errorcodes.RUCIOSERVICEUNAVAILABLE


def test_a_pilot_whose_rucio_config_names_a_closed_port_fails_the_job(rucio, panda, pilot, make_script, tmp_path):
    config = tmp_path / "down.cfg"
    url = f"http://127.0.0.1:{closed_port()}"
    text = Path(rucio["config"]).read_text().replace(rucio["AUTOPILOT_RUCIO_URL"], url)
    config.write_text(text.replace("auth_token_file_path", "# auth_token_file_path"))
    job_id = panda.submit_jobs(
        "LOCAL_QUEUE", 1, str(make_script("t.sh", "true\n")), "", in_files=[{"lfn": "in.dat", "scope": "autopilot"}]
    )[0]
    env = {"RUCIO_CONFIG": str(config), "TMPDIR": str(tmp_path)}
    command = pilot.command("run", panda.url, "--input-url", INPUT_URL, "--output-url", OUTPUT_URL)
    (pilot.root / "work").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    job = panda.job(job_id)
    assert job["status"] == "failed", job
    assert job["pilot_error_code"] == errorcodes.RUCIOSERVICEUNAVAILABLE, job["pilot_error_diag"]
    assert "Cannot connect to the Rucio server" in job["pilot_error_diag"]


def test_without_rucio_clients_the_mover_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['rucio'] = None\n"
        "from pathlib import Path\n"
        "from autopilot_ops.pilot.movers.rucio import RucioMover\n"
        "RucioMover().get('rucio://scope/name', Path(sys.argv[1]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "name")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "the rucio data mover needs rucio-clients, which is not installed" in result.stderr
    assert "pip install 'autopilot-ops[rucio]'" in result.stderr


@pytest.mark.parametrize(
    "url, problem",
    [
        ("file:///x", "not a rucio://<scope>/<name> URL"),
        ("rucio://scope/", "not a rucio://<scope>/<name> URL"),
        ("rucio://scope/a/b", "not a rucio://<scope>/<name> URL"),
        ("rucio://scope/name?rse=X&colour=red", "unknown query key(s) colour"),
    ],
)
def test_a_bad_rucio_url_is_named(url, problem, tmp_path):
    with pytest.raises(TransferError, match=problem.replace("(", r"\(").replace(")", r"\)")) as failure:
        RucioMover().get(url, tmp_path / "x")
    assert url in str(failure.value)


def test_dataset_scope_and_empty_values_in_the_url():
    assert parse_url("rucio://sc/f.dat?rse=&dataset=&guid=") == ("sc", "f.dat", None, None, None, None)
    assert parse_url("rucio://sc/f.dat?rse=R&dataset=other:ds&guid=g") == ("sc", "f.dat", "R", "other", "ds", "g")
    assert parse_url("rucio://sc/f.dat?dataset=ds").dataset_scope == "sc"
