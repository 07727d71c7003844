"""The real Rucio of scripts/rucio-local.sh (PyPI rucio 41.5.1 on 127.0.0.1, PostgreSQL, a POSIX RSE) takes an
upload through Rucio's own client API and gives the file back with the adler32 PanDA reports; the rucio mover is
tested against it."""

from __future__ import annotations

import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from ..conftest import service_settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rucio-local.sh"
ROUND_TRIP = """
import logging, os, sys, tempfile
from rucio.client import Client
from rucio.client.downloadclient import DownloadClient
from rucio.client.uploadclient import UploadClient
path, rse, scope = sys.argv[1:4]
name = os.path.basename(path)
UploadClient(logger=logging.getLogger("upload")).upload(
    [{"path": path, "rse": rse, "did_scope": scope, "register_after_upload": True}])
print(Client().get_metadata(scope, name)["adler32"])
target = tempfile.mkdtemp()
DownloadClient(logger=logging.getLogger("download")).download_dids([{"did": f"{scope}:{name}", "base_dir": target}])
print(os.path.join(target, scope, name))
"""


@pytest.fixture(scope="module")
def rucio() -> dict[str, str]:
    return service_settings(SCRIPT)


def test_an_upload_comes_back_with_its_adler32(rucio, tmp_path) -> None:
    data = tmp_path / f"autopilot-{uuid.uuid4().hex}.dat"  # the server keeps every file of earlier runs
    data.write_bytes(bytes(range(256)) * 400)
    config = Path(rucio["AUTOPILOT_RUCIO_CLIENT_CONFIG"])
    python = config.parents[1] / "venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", ROUND_TRIP, str(data), rucio["AUTOPILOT_RUCIO_RSE"], rucio["AUTOPILOT_RUCIO_SCOPE"]],
        capture_output=True, text=True, timeout=120,
        env={"RUCIO_CONFIG": str(config), "TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    adler32, downloaded = done.stdout.split()[-2:]
    assert adler32 == f"{zlib.adler32(data.read_bytes()) & 0xFFFFFFFF:08x}"
    assert Path(downloaded).read_bytes() == data.read_bytes()
    assert any(Path(rucio["AUTOPILOT_RUCIO_RSE_DIR"]).rglob(data.name)), "the replica is on the RSE's disk"
