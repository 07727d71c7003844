"""Submitting jobs through ``POST /api/v1/job/submit``, as ``pandaclient.Client.submitJobs`` does.

Works against the dev server and a real PanDA server alike (a real one needs a token whose holder may submit).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from autopilot_ops.panda.devserver.jobspec import dump_jobs_json
from autopilot_ops.panda.protocol import ProtocolError, api_path, parse_envelope

#: ``Origin`` sent with a bearer token when none is given (the VO the token belongs to).
DEFAULT_ORIGIN = "autopilot"
#: ``job_api.py: submit`` keeps at most 5000 jobs of one request.
BATCH_SIZE = 5000


class SubmitError(RuntimeError):
    """Submission failed; the message names the server and the reason."""


def submit_specs(
    server_url: str,
    specs: Sequence[Mapping[str, Any]],
    token: str | None = None,
    origin: str = DEFAULT_ORIGIN,
    timeout: float = 60.0,
) -> list[list[Any]]:
    """Submit job specs; returns ``[[PandaID, jobDefinitionID, jobName], ...]``.

    Sent in batches of ``BATCH_SIZE``, since the server keeps at most that many jobs of one request.
    """
    replies: list[list[Any]] = []
    for start in range(0, len(specs), BATCH_SIZE):
        replies.extend(_submit_batch(server_url, specs[start : start + BATCH_SIZE], token, origin, timeout))
    return replies


def _submit_batch(
    server_url: str, specs: Sequence[Mapping[str, Any]], token: str | None, origin: str, timeout: float
) -> list[list[Any]]:
    url = server_url.rstrip("/") + api_path("job", "submit")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
        headers["Origin"] = origin
    body = json.dumps({"jobs": dump_jobs_json(specs)}).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace").strip()
        raise SubmitError(f"{url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SubmitError(f"cannot reach {url}: {reason}") from exc
    try:
        envelope = parse_envelope(text)
    except ProtocolError as exc:
        raise SubmitError(f"{url} sent a reply that is not a PanDA envelope: {exc}") from exc
    if not envelope.success:
        raise SubmitError(f"{url} refused the jobs: {envelope.message}")
    if not isinstance(envelope.data, list) or len(envelope.data) != len(specs):
        raise SubmitError(f"{url} answered {envelope.data!r}, not one entry per submitted job")
    return envelope.data
