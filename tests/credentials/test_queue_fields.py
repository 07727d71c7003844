"""Credentials in queue files and back ends: checked with errors naming the queue and field, stored as paths, and
resolved back end < queue, ``*`` < job type."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from autopilot_ops.credentials.checks import credential_for, credential_lifetimes, minimum_lifetime
from autopilot_ops.credentials.model import Credential, parse_credentials, resolve
from autopilot_ops.queues.errors import QueueFileError
from autopilot_ops.queues.loader import load_queues, read_queue_file
from autopilot_ops.store.connection import Store
from autopilot_ops.store.queues import get_queue

GOOD = """
backends:
  - name: pool
    kind: local
    parameters:
      credentials:
        "*": {kind: proxy, path: /etc/grid/x509_pilot}
queues:
  - name: Q1
    site: S1
    backend: pool
    prod_source_labels: [managed, user]
    min_credential_lifetime: 7200
    credentials:
      "*": {kind: token, path: /etc/panda/tokens/../token, origin: atlas.cern.ch}
      user: {kind: proxy, path: /etc/grid/x509_user, pass_to_payload: true}
"""


def write(tmp_path: Path, text: str, name: str = "queues.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_credentials_are_stored_as_paths_and_resolved(store: Store, tmp_path: Path) -> None:
    load_queues(store, write(tmp_path, GOOD))
    with store.transaction() as cur:
        row = get_queue(cur, "Q1")
        cur.execute("SELECT parameters FROM backends WHERE name = 'pool'")
        backend = cur.fetchone()["parameters"]
    assert row is not None
    assert row["credentials"] == {
        "*": {"kind": "token", "path": "/etc/panda/token", "origin": "atlas.cern.ch", "pass_to_payload": False},
        "user": {"kind": "proxy", "path": "/etc/grid/x509_user", "pass_to_payload": True},
    }
    assert row["min_credential_lifetime"] == 7200 and minimum_lifetime(row) == 7200
    assert credential_for(row, backend, "managed") == Credential("token", "/etc/panda/token", "atlas.cern.ch")
    assert credential_for(row, backend, "user") == Credential("proxy", "/etc/grid/x509_user", pass_to_payload=True)
    assert credential_for({**row, "credentials": {}}, backend, "managed") == Credential("proxy", "/etc/grid/x509_pilot")
    assert credential_for({**row, "credentials": {}}, {}, "managed") is None
    again = load_queues(store, write(tmp_path, GOOD))
    assert again.plan.unchanged == 1, "a reload of the same credentials changes nothing"


def test_resolution_order_back_end_then_queue_then_job_type() -> None:
    backend = parse_credentials({"*": {"kind": "proxy", "path": "/b/any"}, "ptest": {"kind": "proxy", "path": "/b/pt"}})
    queue = parse_credentials({"*": {"kind": "proxy", "path": "/q/any"}, "user": {"kind": "proxy", "path": "/q/user"}})
    assert resolve({}, backend, "managed").path == "/b/any"
    assert resolve({}, backend, "ptest").path == "/b/pt", "a job type's beats '*'"
    assert resolve(queue, backend, "managed").path == "/q/any", "the queue's beats the back end's"
    assert resolve(queue, backend, "ptest").path == "/q/any", "the queue's '*' beats the back end's job type"
    assert resolve(queue, backend, "user").path == "/q/user"
    assert resolve({}, {}, "managed") is None


def test_minimum_lifetime_defaults_to_maxtime_at_least_an_hour() -> None:
    assert minimum_lifetime({"min_credential_lifetime": None, "maxtime": 0}) == 3600
    assert minimum_lifetime({"min_credential_lifetime": None, "maxtime": 1800}) == 3600
    assert minimum_lifetime({"min_credential_lifetime": None, "maxtime": 86400}) == 86400
    assert minimum_lifetime({"min_credential_lifetime": 0, "maxtime": 86400}) == 0


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"*": {"kind": "jwt", "path": "/t"}},
         "job type '*': field 'kind': unknown kind 'jwt' (expected one of: token, proxy)"),
        ({"managed": {"kind": "token", "path": "tokens/t", "origin": "o"}},
         "job type 'managed': field 'path': 'tokens/t' must be an absolute path"),
        ({"*": {"kind": "token", "path": "/t"}}, "job type '*': field 'origin': a token needs the origin"),
        ({"*": {"kind": "proxy", "path": "/p", "origin": "o"}}, "job type '*': field 'origin': only a token"),
        ({"*": {"kind": "proxy", "path": "/p", "value": "eyJ..."}}, "job type '*': field 'value' is not a credential"),
        ({"*": {"kind": "proxy"}}, "job type '*': field 'path': must be the path of the proxy file"),
        ({"*": {"kind": "proxy", "path": "/p", "pass_to_payload": "yes"}}, "field 'pass_to_payload': must be true"),
        ({"*": "/p"}, "job type '*': must be an object with kind and path"),
        (["/p"], "must be an object of job types"),
    ],
)
def test_bad_credentials_name_the_queue_and_field(tmp_path: Path, credentials: object, message: str) -> None:
    document = {"queues": [{"name": "Q1", "site": "S1", "credentials": credentials}]}
    with pytest.raises(QueueFileError) as raised:
        read_queue_file(write(tmp_path, json.dumps(document), "queues.json"))
    [problem] = raised.value.problems
    assert (problem.queue, problem.field) == ("Q1", "credentials")
    assert message in problem.message


def test_cric_queues_take_credentials_in_their_autopilot_object(tmp_path: Path) -> None:
    cric = {"CERN-PROD": {"status": "online", "site": "CERN", "autopilot": {
        "credentials": {"*": {"kind": "token", "path": "/t", "origin": "o"}}, "min_credential_lifetime": -1}}}
    with pytest.raises(QueueFileError) as raised:
        read_queue_file(write(tmp_path, json.dumps(cric), "cric.json"))
    [problem] = raised.value.problems
    assert (problem.queue, problem.field) == ("CERN-PROD", "min_credential_lifetime")
    assert problem.message == "must be >= 0, got -1"


def test_a_back_ends_bad_credentials_are_named(tmp_path: Path) -> None:
    text = GOOD.replace("{kind: proxy, path: /etc/grid/x509_pilot}", "{kind: token, path: /etc/panda/t}")
    with pytest.raises(QueueFileError) as raised:
        read_queue_file(write(tmp_path, text))
    [problem] = raised.value.problems
    assert problem.field == "backends[0].parameters"
    assert "credentials: job type '*': field 'origin'" in problem.message


def test_a_bad_back_end_setting_in_the_database_is_a_reason_to_stop() -> None:
    queue = {"panda_queue": "Q1", "backend": "pool", "prod_source_labels": ["managed"], "credentials": {},
             "min_credential_lifetime": None, "maxtime": None}
    backend = {"credentials": {"*": {"kind": "proxy", "path": "relative"}}}
    [lifetime] = credential_lifetimes(queue, backend, dt.datetime.now(dt.timezone.utc))
    assert lifetime.error is not None and "back end 'pool': parameter 'credentials'" in lifetime.error
