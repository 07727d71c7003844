"""autopilot-wrapper.sh under dash: fetching the pilot code with its sha256, running it, forwarding
signals, the stale-log supervisor, exit-code translation, cleaning up."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

import autopilot_ops
from autopilot_ops.pilot import errorcodes

WRAPPER = Path(autopilot_ops.__file__).parent / "pilot" / "autopilot-wrapper.sh"
QUEUE = "LOCAL_QUEUE"
VERSION = "9.9.9"


def pilot_files() -> list[tuple[str, bytes]]:
    """This checkout's autopilot_ops, marked as version 9.9.9, with a dist-info holding its entry points."""
    package = Path(autopilot_ops.__file__).parent
    files = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            data = path.read_bytes()
            if path == package / "__init__.py":
                data = data.replace(b'__version__ = "', f'__version__ = "{VERSION}+'.encode())
            files.append((f"autopilot_ops/{path.relative_to(package)}", data))
    entry_points = distribution("autopilot-ops").read_text("entry_points.txt") or ""
    metadata = f"Metadata-Version: 2.1\nName: autopilot-ops\nVersion: {VERSION}\n"
    info = f"autopilot_ops-{VERSION}.dist-info"
    files += [(f"{info}/METADATA", metadata.encode()), (f"{info}/entry_points.txt", entry_points.encode())]
    return files


def pilot_tarball(path: Path) -> str:
    """The pilot code as a tarball with a top directory; returns its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in pilot_files():
            member = tarfile.TarInfo(f"autopilot-pilot/{name}")
            member.size = len(data)
            member.mode = 0o755 if name.endswith(".sh") else 0o644
            archive.addfile(member, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pilot_wheel(path: Path) -> str:
    """The pilot code as a (pure-Python) wheel; returns its sha256."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in pilot_files():
            archive.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def code(tmp_path, panda):
    """(URL template, sha256) of the pilot tarball served by the dev server."""
    digest = pilot_tarball(tmp_path / "files" / f"autopilot-pilot-{VERSION}.tar.gz")
    return f"{panda.url}/autopilot-pilot-{{version}}.tar.gz", digest


def wrapper_command(tmp_path, panda, *wrapper_args, pilot_args=()):
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return [
        "/bin/sh",
        str(WRAPPER),
        "--python",
        sys.executable,
        "--workdir",
        str(scratch),
        "--min-disk-mb",
        "1",
        *wrapper_args,
        "--",
        "--queue",
        QUEUE,
        "--server",
        panda.url,
        "--home",
        str(tmp_path / "home"),
        *pilot_args,
    ]


def run_wrapper(tmp_path, panda, *wrapper_args, pilot_args=()):
    return subprocess.run(
        wrapper_command(tmp_path, panda, *wrapper_args, pilot_args=pilot_args),
        capture_output=True,
        text=True,
        timeout=120,
    )


def summary(result) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("autopilot-wrapper: summary"))


def scratch_is_clean(tmp_path) -> bool:
    return not list((tmp_path / "scratch").iterdir())


def test_fetched_code_with_good_sha256_runs_the_job(tmp_path, panda, code, make_script):
    url, digest = code
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("t.sh", "echo wrapped\n")), "")[0]
    result = run_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-version", VERSION, "--pilot-sha256", digest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert panda.job(job_id)["status"] == "finished"
    assert f"version={VERSION}+0.1.0" in result.stdout  # the fetched code ran, not the installed one
    assert "wrapper_exit=0 pilot_exit=0" in summary(result)
    assert scratch_is_clean(tmp_path)


def test_fetched_wheel_runs(tmp_path, panda):
    digest = pilot_wheel(tmp_path / "files" / f"autopilot_ops-{VERSION}-py3-none-any.whl")
    url = f"{panda.url}/autopilot_ops-{{version}}-py3-none-any.whl"
    result = run_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-version", VERSION, "--pilot-sha256", digest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"version={VERSION}+0.1.0" in result.stdout and "pilot_exit=82" in summary(result)


def test_bad_sha256_refuses_to_start(tmp_path, panda, code, make_script):
    url, _ = code
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("t.sh", "exit 0\n")), "")[0]
    result = run_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-version", VERSION, "--pilot-sha256", "ab" * 32)
    assert result.returncode == 3
    assert "expected abab" in result.stderr and "wrapper_exit=3" in summary(result)
    assert panda.job(job_id)["status"] == "activated"
    assert scratch_is_clean(tmp_path)


def test_pinned_version_needs_a_sha256(tmp_path, panda, code):
    result = run_wrapper(tmp_path, panda, "--pilot-url", code[0], "--pilot-version", VERSION)
    assert result.returncode == 3 and "needs --pilot-sha256" in result.stderr


def test_current_version_checked_against_sidecar(tmp_path, panda, code):
    url, digest = code
    current = tmp_path / "files" / "autopilot-pilot-current.tar.gz"
    current.write_bytes((tmp_path / "files" / f"autopilot-pilot-{VERSION}.tar.gz").read_bytes())
    (tmp_path / "files" / "autopilot-pilot-current.tar.gz.sha256").write_text(f"{digest}  pilot.tar.gz\n")
    result = run_wrapper(tmp_path, panda, "--pilot-url", url)
    assert result.returncode == 0, result.stderr  # no jobs: pilot exit 82 is a success for the wrapper
    assert "wrapper_exit=0 pilot_exit=82" in summary(result) and "no jobs in PanDA" in summary(result)


def test_stale_log_supervisor_kills_the_pilot(tmp_path, panda, make_script):
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("quiet.sh", "sleep 60\n")), "")[0]
    result = run_wrapper(tmp_path, panda, "--stale-timeout", "4", "--kill-grace", "5", pilot_args=("--kill-grace", "1"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "stale pilot log" in summary(result) and "pilot_exit=143" in summary(result)
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.SIGTERM


def test_signal_is_forwarded_to_the_pilot(tmp_path, panda, make_script, wait_for):
    started = tmp_path / "started"
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("long.sh", f"touch {started}; sleep 60\n")), "")[0]
    process = subprocess.Popen(
        wrapper_command(tmp_path, panda, pilot_args=("--kill-grace", "1")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(started.exists, what="payload start")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stdout + stderr
    assert "forwarding SIGTERM" in stderr and "pilot_exit=143" in stdout
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.SIGTERM
    assert scratch_is_clean(tmp_path)


def test_missing_python_is_reported(tmp_path, panda):
    command = wrapper_command(tmp_path, panda)
    command[command.index("--python") + 1] = str(tmp_path / "no-python")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "not found" in result.stderr


def test_a_relative_kept_dir_is_made_where_the_wrapper_starts_even_when_it_fails(tmp_path, panda):
    """HTCondor brings back the kept dir of the job's scratch dir (where the wrapper starts), and holds the job if
    it is missing: the wrapper makes it before any check can fail."""
    command = wrapper_command(tmp_path, panda)
    command[command.index("--python") + 1] = str(tmp_path / "no-python")
    start = tmp_path / "job-scratch"
    start.mkdir()
    env = {**os.environ, "AUTOPILOT_KEPT_DIR": "autopilot-kept"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=start, env=env)
    assert result.returncode == 3 and "not found" in result.stderr
    assert (start / "autopilot-kept").is_dir()


SYSTEM_PYTHON = "/usr/bin/python3"
needs_system_python = pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs the system python3")


@pytest.fixture
def bundle_url(tmp_path, panda):
    """(URL, sha256) of this checkout's pilot bundle, served by the dev server."""
    from autopilot_ops.pilot.bundle import build_bundle

    built = build_bundle(tmp_path / "files")
    return f"{panda.url}/{built.path.name}", built.sha256


def bare_wrapper(tmp_path, panda, *wrapper_args, path="/usr/bin:/bin"):
    """The wrapper with the system python3 in an empty environment, as a batch system on a bare node runs it."""
    command = wrapper_command(tmp_path, panda, *wrapper_args)
    command[command.index("--python") + 1] = SYSTEM_PYTHON
    env = ["env", "-i", f"PATH={path}", f"HOME={tmp_path}"]
    return subprocess.run([*env, *command], capture_output=True, text=True, timeout=120)


@needs_system_python
def test_fetched_bundle_runs_the_job_on_a_bare_node(tmp_path, panda, bundle_url, make_script):
    url, digest = bundle_url
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("t.sh", "echo bundled\n")), "")[0]
    result = bare_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-sha256", digest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert panda.job(job_id)["status"] == "finished"
    assert f"pilot code {url} ({digest}) at " in result.stderr and "pilot.pyz" in result.stderr
    assert "wrapper_exit=0 pilot_exit=0" in summary(result)
    assert scratch_is_clean(tmp_path)


@needs_system_python
def test_bundle_with_a_wrong_sha256_is_refused(tmp_path, panda, bundle_url, make_script):
    url, digest = bundle_url
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("t.sh", "exit 0\n")), "")[0]
    result = bare_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-sha256", "cd" * 32)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"pilot code {url} has sha256 {digest}, expected {'cd' * 32}: refusing to run it" in result.stderr
    assert "wrapper_exit=3" in summary(result) and panda.job(job_id)["status"] == "activated"
    assert scratch_is_clean(tmp_path)


@needs_system_python
def test_bundle_fetched_and_checked_with_python_alone(tmp_path, panda, bundle_url, make_script):
    """A node without curl, wget and sha256sum: python's urllib fetches, its hashlib checks."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for directory in ("/bin", "/usr/bin"):
        for tool in Path(directory).iterdir():
            if tool.name not in ("curl", "wget", "sha256sum") and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    url, digest = bundle_url
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("t.sh", "echo fetched by urllib\n")), "")[0]
    result = bare_wrapper(tmp_path, panda, "--pilot-url", url, "--pilot-sha256", digest, path=str(tools))
    assert result.returncode == 0, result.stdout + result.stderr
    assert panda.job(job_id)["status"] == "finished"
