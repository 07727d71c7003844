"""Credentials through the HTCondor back ends: the submit description, then the real pool's job ads and jobs (a
token shipped as an input file the pilot reads, a proxy as x509userproxy), and a CE's scitokens_file."""

from __future__ import annotations

import hashlib
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.base import BackendError
from autopilot_ops.backends.condor import CondorBackend, CondorCEBackend
from autopilot_ops.credentials.lifetime import proxy_expiry
from autopilot_ops.credentials.model import Credential

from ..credentials.fakes import make_proxy, make_token
from .test_condor import JOB_OWNER, backend, client_env, log_root, spec, statuses_when  # noqa: F401 (fixtures)

TOKEN = Credential("token", "/etc/panda/pilot-token", "atlas.cern.ch")
PROXY = Credential("proxy", "/etc/grid/x509_pilot")


def description(condor: CondorBackend, credential: Credential, tmp_path: Path) -> dict[str, str]:
    return condor.submit_description(spec(tmp_path, "exit 0", credential=credential), tmp_path)


def test_a_token_is_an_input_file_the_pilot_finds_in_its_working_directory(tmp_path: Path) -> None:
    shipped = description(CondorBackend("pool"), TOKEN, tmp_path)
    assert shipped["transfer_input_files"] == "/etc/panda/pilot-token"
    assert (shipped["should_transfer_files"], shipped["when_to_transfer_output"]) == ("YES", "ON_EXIT")
    assert shipped["stream_output"] == shipped["stream_error"] == "True", "the pilot's log stays live"
    assert "PANDA_AUTH_TOKEN_FILE='pilot-token'" in shipped["environment"]
    assert "PANDA_AUTH_ORIGIN='atlas.cern.ch'" in shipped["environment"]
    assert "x509userproxy" not in shipped and "AUTOPILOT_PASS_CREDENTIALS" not in shipped["environment"]


def test_a_proxy_is_x509userproxy_and_htcondor_names_it_to_the_pilot(tmp_path: Path) -> None:
    shipped = description(CondorBackend("pool"), Credential("proxy", PROXY.path, pass_to_payload=True), tmp_path)
    assert shipped["x509userproxy"] == "/etc/grid/x509_pilot"
    assert "X509_USER_PROXY" not in shipped["environment"], "HTCondor sets it to the job's copy"
    assert "AUTOPILOT_PASS_CREDENTIALS='1'" in shipped["environment"]
    assert shipped["should_transfer_files"] == "YES", "HTCondor copies the proxy only with the job's files"
    assert "transfer_input_files" not in shipped


def test_through_a_ce_the_token_also_authenticates_htcondor(tmp_path: Path) -> None:
    ce = CondorCEBackend("ce", {"ce": "ce01.example.invalid", "x509_proxy": "/other/proxy"})
    shipped = description(ce, TOKEN, tmp_path)
    assert shipped["scitokens_file"] == shipped["transfer_input_files"] == TOKEN.path
    assert "stream_output" not in shipped
    own = CondorCEBackend("ce", {"ce": "ce01.example.invalid", "scitokens_file": "/etc/condor/ce-token"})
    assert description(own, TOKEN, tmp_path)["scitokens_file"] == "/etc/condor/ce-token"
    assert description(ce, PROXY, tmp_path)["x509userproxy"] == PROXY.path, "the queue's proxy beats the back end's"


def test_through_a_ce_a_proxy_that_is_no_proxy_or_has_expired_is_refused_before_htcondor(tmp_path: Path) -> None:
    """Refused before the schedd is asked (this CE's back end names no pool it could reach)."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    expired = tmp_path / "expired.pem"
    make_proxy(expired, lifetime_s=-60)
    fine = tmp_path / "fine.pem"
    make_proxy(fine, lifetime_s=3600)
    where = r"condor-ce back end 'ce' \(queue Q1, CE ce01.example.invalid\)"
    for proxy, error in ((junk, rf"{where}: proxy file {junk} holds no PEM certificate$"),
                         (expired, rf"{where}: proxy {expired} expired at 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC$")):
        ce = CondorCEBackend("ce", {"ce": "ce01.example.invalid", "x509_proxy": str(proxy)})
        with pytest.raises(BackendError, match=error):
            ce.submit(1, spec(tmp_path, "exit 0", queue="Q1"))
    queue_proxy = spec(tmp_path, "exit 0", queue="Q1", credential=Credential("proxy", str(expired)))
    with pytest.raises(BackendError, match="expired at"):
        CondorCEBackend("ce", {"ce": "ce01.example.invalid", "x509_proxy": str(fine)}).submit(1, queue_proxy)


def test_a_path_htcondor_would_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="credential path '/a,b' holds a comma"):
        description(CondorBackend("pool"), Credential("token", "/a,b", "o"), tmp_path)


@pytest.fixture
def owned_dir() -> Iterator[Path]:
    """A directory under the shared /tmp that only the job owner reads, as a site keeps its credentials."""
    user = pwd.getpwnam(JOB_OWNER)
    path = Path(tempfile.mkdtemp(prefix="autopilot-credentials-", dir="/tmp"))
    path.chmod(0o700)
    shutil.chown(path, user.pw_uid, user.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def own(path: Path) -> Path:
    shutil.chown(path, JOB_OWNER, pwd.getpwnam(JOB_OWNER).pw_gid)
    return path


@pytest.mark.condor
def test_the_pool_ships_the_token_to_the_pilot(backend: CondorBackend, log_root: Path, owned_dir: Path) -> None:  # noqa: F811
    path = owned_dir / "panda-token"
    token = make_token(path, 3600)
    own(path)
    script = 'sha256sum < "$PANDA_AUTH_TOKEN_FILE"; echo "$PANDA_AUTH_ORIGIN"; pwd'
    [pilot] = backend.submit(1, spec(log_root, script, credential=Credential("token", str(path), "test.example")))
    ad = backend._ads_by_id([pilot.batch_id], ["ClusterId", "ProcId", "TransferInput", "Environment"])[pilot.batch_id]
    assert ad["TransferInput"] == str(path)
    assert token not in str(ad), "the job ad holds the path, never the token"
    statuses_when(backend, [pilot.batch_id], lambda s: s.state.is_final, "the pilot to end")
    digest, origin, workdir = pilot.stdout.read_text().split("\n")[:3]
    assert digest.split()[0] == hashlib.sha256(token.encode() + b"\n").hexdigest()
    assert origin == "test.example"
    assert workdir != str(pilot.stdout.parent), "the pilot ran in its scratch directory, where the token is"


@pytest.mark.condor
def test_the_schedd_takes_the_proxy_as_x509userproxy(backend: CondorBackend, log_root: Path, owned_dir: Path) -> None:  # noqa: F811
    """Submitted on hold: this pool's starter cannot take a delegated proxy (its ``X509Credential::Request()``
    fails in the chroot), so the job ad shows what HTCondor read of the proxy, and that it agrees with us."""
    path = owned_dir / "x509up"
    expires = make_proxy(path, 7200)
    own(path)
    pilot = spec(log_root, "exit 0", credential=Credential("proxy", str(path)), parameters={"submit": {"hold": "True"}})
    [submitted] = backend.submit(1, pilot)
    try:
        projection = ["ClusterId", "ProcId", "x509userproxy", "x509UserProxyExpiration", "x509userproxysubject",
                      "ShouldTransferFiles"]
        ad = backend._ads_by_id([submitted.batch_id], projection)[submitted.batch_id]
        assert (ad["x509userproxy"], ad["ShouldTransferFiles"]) == (str(path), "YES")
        assert ad["x509userproxysubject"] == "/CN=Test User proxy"
        assert ad["x509UserProxyExpiration"] == int(expires.timestamp()) == int(proxy_expiry(path).timestamp())
    finally:
        backend.cancel([submitted.batch_id])


@pytest.mark.condor
def test_a_ce_job_ad_carries_the_token_for_htcondor_and_the_pilot(
    backend: CondorBackend, log_root: Path, owned_dir: Path  # noqa: F811
) -> None:
    path = owned_dir / "token"
    make_token(path, 3600)
    own(path)
    ce = CondorCEBackend("ce", {**backend.parameters, "ce": "ce01.example.invalid"})
    pilot = spec(log_root, "exit 0", credential=Credential("token", str(path), "o"),
                 parameters={"submit": {"hold": "True"}})
    [submitted] = ce.submit(1, pilot)
    try:
        ad = backend._ads_by_id([submitted.batch_id], ["ClusterId", "ProcId", "ScitokensFile", "TransferInput"])
        assert (ad[submitted.batch_id]["ScitokensFile"], ad[submitted.batch_id]["TransferInput"]) == (str(path),) * 2
    finally:
        backend.cancel([submitted.batch_id])
