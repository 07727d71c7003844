"""Routing, encodings, envelopes and error paths, checked against the replies of a real PanDA server 1.0.4."""

from __future__ import annotations

import gzip
import json
import socket
from urllib.parse import urlencode

import pytest


def test_is_alive_json_matches_reference(client, reference):
    answer = client.get("/api/v1/system/is_alive")
    assert answer.status == reference["is_alive"]["http"]
    assert answer.json() == reference["is_alive"]["body"]
    assert answer.headers["content-type"] == "text/plain"


def test_without_accept_header_the_reply_is_a_python_repr(client, reference):
    answer = client.send("GET", "/api/v1/system/is_alive")
    assert answer.status == 200
    assert answer.text == reference["no_accept_header"]["body"]
    assert answer.headers["content-type"] == "text/plain"


def test_json_content_type_alone_asks_for_a_json_reply(client):
    body = json.dumps({"site_name": "NOWHERE"}).encode()
    answer = client.send("POST", "/api/v1/pilot/acquire_jobs", body, {"Content-Type": "application/json"})
    assert answer.json() == {"success": False, "message": "No jobs in PanDA", "data": None}


def test_latest_is_an_alias_of_v1(client):
    assert client.get("/api/latest/system/is_alive").json()["success"] is True


@pytest.mark.parametrize(
    ("path", "method_name"),
    [
        ("/api/v1/pilot/no_such_method", "no_such_method"),
        ("/api/v1/no_module/is_alive", "is_alive"),
        ("/api/v2/system/is_alive", "is_alive"),
        ("/server/panda/getJob", "getJob"),
        ("/server/panda/updateJob", "updateJob"),
        ("/server/panda/getStatus", "getStatus"),
        ("/api/v1/pilot", ""),
    ],
)
def test_methods_not_offered_are_forbidden(client, reference, path, method_name):
    answer = client.post(path, {})
    assert answer.status == 403
    assert answer.text == f"ERROR : method {method_name} is forbidden"
    assert answer.headers["content-type"] == "text/plain"


def test_forbidden_replies_match_reference(client, reference):
    unknown = client.post("/api/v1/pilot/no_such_method", {})
    legacy = client.post("/server/panda/getJob", {"siteName": "X"})
    assert (unknown.status, unknown.text) == (reference["unknown_method"]["http"], reference["unknown_method"]["body"])
    assert (legacy.status, legacy.text) == (reference["legacy_getJob"]["http"], reference["legacy_getJob"]["body"])


def test_acquire_with_no_work_matches_reference(client, reference):
    answer = client.acquire("LOCAL_QUEUE")
    assert answer.status == reference["acquire_empty"]["http"]
    assert answer.json() == reference["acquire_empty"]["body"]


def test_form_encoded_update_is_a_type_error_as_on_the_real_server(client, reference):
    body = urlencode({"job_id": 1, "job_status": "running"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    answer = client.send("POST", "/api/v1/pilot/update_job", body, headers)
    assert answer.status == reference["update_form_encoded"]["http"]
    assert answer.json() == reference["update_form_encoded"]["body"]


def test_json_string_where_an_int_is_expected_is_rejected(client):
    answer = client.update("42", "running")  # type: ignore[arg-type]
    assert answer.json() == {
        "success": False,
        "message": "Type error: 'job_id' must be of type int, got str.",
        "data": None,
    }


def test_list_elements_are_type_checked(client):
    answer = client.post("/api/v1/job/kill", {"job_ids": [1, "2"]})
    assert answer.json()["message"] == "Type error: All elements in 'job_ids' must be int."


def test_missing_and_unknown_arguments(client):
    missing = client.post("/api/v1/pilot/acquire_jobs", {})
    unknown = client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q", "colour": "red"})
    assert missing.json()["message"] == "Argument error: missing a required argument: 'site_name'"
    assert unknown.json()["message"] == "Argument error: got an unexpected keyword argument 'colour'"


def test_wrong_http_method_is_refused_in_the_envelope(client):
    answer = client.get("/api/v1/pilot/acquire_jobs?site_name=Q")
    assert answer.status == 200
    assert answer.json() == {"success": False, "message": "expecting POST, received GET", "data": None}


def test_gzip_bodies_are_accepted(client):
    answer = client.post("/api/v1/pilot/acquire_jobs", {"site_name": "GZ"}, gzipped=True)
    assert answer.json()["message"] == "No jobs in PanDA"


def test_gzip_body_that_is_not_gzip_is_an_error(client):
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    answer = client.send("POST", "/api/v1/pilot/acquire_jobs", b'{"site_name": "Q"}', headers)
    assert answer.status == 500
    assert answer.text.startswith("ERROR : received invalid gzip body")


def test_invalid_json_is_a_500_with_the_real_message(client):
    headers = {"Content-Type": "application/json"}
    answer = client.send("POST", "/api/v1/pilot/acquire_jobs", b'{"site_name": ', headers)
    assert answer.status == 500
    assert answer.text.startswith("ERROR : received invalid JSON : ")


def test_get_parameters_repeat_their_key_for_lists(client, srv, reference):
    ids = srv.submit_jobs("LOCAL_QUEUE", 2, f"{srv.url}/hello.sh", "")
    answer = client.get(f"/api/v1/pilot/get_job_status?job_ids={ids[1]}&job_ids=987654321&job_ids={ids[0]}")
    assert answer.json()["data"] == [
        {"job_id": ids[1], "status": "activated", "attempt_number": 0},
        reference["status_unknown_id"]["body"]["data"][0],
        {"job_id": ids[0], "status": "activated", "attempt_number": 0},
    ]


def test_status_of_an_unknown_id_matches_reference(client, reference):
    answer = client.get("/api/v1/pilot/get_job_status?job_ids=987654321")
    assert answer.status == reference["status_unknown_id"]["http"]
    assert answer.json() == reference["status_unknown_id"]["body"]


def test_get_parameter_that_cannot_be_cast(client):
    answer = client.get("/api/v1/pilot/get_job_status?job_ids=abc")
    assert answer.json()["message"] == (
        "Type error: 'job_ids' with value 'abc' could not be casted to type List from str."
    )


def test_keep_alive_connection_serves_many_requests(client):
    for _ in range(5):
        assert client.get("/api/v1/system/is_alive").status == 200
    assert client.post("/api/v1/pilot/no_such_method", {}).status == 403
    assert client.get("/api/v1/system/is_alive").json()["success"] is True


def test_chunked_request_body(client):
    payload = json.dumps({"site_name": "CHUNKED"}).encode()
    chunked = f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n"
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", "Accept": "application/json"}
    answer = client.send("POST", "/api/v1/pilot/acquire_jobs", chunked, headers)
    assert answer.json()["message"] == "No jobs in PanDA"


def test_a_gzip_body_without_content_encoding_is_invalid_json(client):
    headers = {"Content-Type": "application/json"}
    answer = client.send("POST", "/api/v1/pilot/acquire_jobs", gzip.compress(b'{"site_name": "Q"}'), headers)
    assert answer.status == 500
    assert answer.text.startswith("ERROR : received invalid JSON : ")


def raw_exchange(srv, request: bytes, send_after_continue: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(request)
        if send_after_continue:
            assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(send_after_continue)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_expect_100_continue_and_http10_close(srv):
    body = json.dumps({"site_name": "Q"}).encode()
    head = (
        "POST /api/v1/pilot/acquire_jobs HTTP/1.0\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    reply = raw_exchange(srv, head, body)  # HTTP/1.0: the server closes after one reply
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in reply.lower()  # header names are case-insensitive (RFC 9110)
    assert reply.endswith(b'{"success": false, "message": "No jobs in PanDA", "data": null}')


def test_malformed_request_line_gets_400_and_close(srv):
    reply = raw_exchange(srv, b"HELLO\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in reply.lower()
