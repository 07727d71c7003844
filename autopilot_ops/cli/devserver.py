"""``autopilot panda-devserver [submit | jobs | queue]``: run the PanDA dev server, inject jobs, list them,
declare a queue's configuration (as CRIC gives it to PanDA).

The dev server imports little beyond the standard library, so it answers within a second of starting.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from autopilot_ops.cli.common import CommandError, print_table
from autopilot_ops.config import state_dir
from autopilot_ops.netutil import is_loopback
from autopilot_ops.panda.devserver.auth import (
    AuthConfigError,
    Authenticator,
    TokenAuthenticator,
    load_identities,
    open_authenticator,
)
from autopilot_ops.panda.devserver.database import Database, DatabaseError
from autopilot_ops.panda.devserver.jobspec import JobSpecError, build_job_spec
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.schedconfig import QueueConfigs
from autopilot_ops.panda.devserver.server import PandaDevServer, ServerConfig, ServerError
from autopilot_ops.panda.protocol import DEFAULT_PORT

#: Environment variable holding the bearer token (``--auth token``, and ``submit`` against such a server).
TOKEN_ENV = "AUTOPILOT_DEVSERVER_TOKEN"
#: CRIC's queue statuses.
QUEUE_STATUSES = ("online", "offline", "test", "brokeroff")
#: ``jobdispatcher/Watcher.py`` waits 360 minutes before failing a silent job.
DEFAULT_HEARTBEAT_TIMEOUT = 360 * 60


def default_db() -> Path:
    return state_dir() / "panda-devserver.db"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "panda-devserver",
        help="run a small PanDA server (wire-compatible with PanDA 1.0.x) for the quick start and tests",
        description="Serve the PanDA API on HOST:PORT (default 127.0.0.1:25080); or submit/list jobs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    _add_db_argument(parser)
    parser.add_argument("--files", type=Path, help="directory served as static files at the root path")
    parser.add_argument(
        "--auth",
        choices=("open", "token", "identities"),
        default="open",
        help="open: everyone has the production role (loopback only); token: one bearer token "
        f"(--token-file or ${TOKEN_ENV}); identities: --identities FILE",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token for --auth token")
    parser.add_argument(
        "--identities", type=Path, help='JSON file {"identities": [{"dn", "token", "production"}, ...]}'
    )
    parser.add_argument(
        "--legacy", action="store_true", help="also serve the pre-1.0 /server/panda/getJob, updateJob, ..."
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=DEFAULT_HEARTBEAT_TIMEOUT,
        help=f"fail jobs with no update for this many seconds; 0 turns it off (default {DEFAULT_HEARTBEAT_TIMEOUT})",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only, not one line per request")
    parser.set_defaults(func=serve_command)

    commands = parser.add_subparsers(dest="devserver_command")
    submit = commands.add_parser("submit", help="inject jobs through /api/v1/job/submit")
    submit.add_argument("--server", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="server URL")
    submit.add_argument("--queue", required=True, help="PanDA queue (computingSite) of the jobs")
    submit.add_argument("--count", type=int, default=1, help="number of jobs (default 1)")
    submit.add_argument("--transformation", required=True, help="URL of the payload script")
    submit.add_argument("--job-pars", default="", help="the payload's arguments")
    submit.add_argument("--priority", type=int, default=1000, help="currentPriority (default 1000)")
    submit.add_argument("--prod-source-label", default="managed", help="prodSourceLabel (default managed)")
    submit.add_argument("--in-file", action="append", default=[], metavar="LFN", help="an input file (repeat)")
    submit.add_argument("--out-file", action="append", default=[], metavar="LFN", help="an output file (repeat)")
    submit.add_argument("--no-log-file", action="store_true", help="do not give the jobs a log file")
    submit.add_argument("--token-file", type=Path, help=f"bearer token file (default ${TOKEN_ENV} if set)")
    submit.add_argument("--json", action="store_true", help="print the reply as JSON")
    submit.set_defaults(func=submit_command)

    jobs = commands.add_parser("jobs", help="list the jobs in the dev server's database, with their states")
    _add_db_argument(jobs)
    jobs.add_argument("--queue", help="only this queue")
    jobs.add_argument("--id", type=int, metavar="PANDA_ID", help="everything about one job, with its history (JSON)")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.set_defaults(func=jobs_command)

    queue = commands.add_parser(
        "queue",
        help="show or set a queue's configuration (schedconfig): the factory serving it, its CEs, cores, ...",
        description="With only NAME, print its configuration; with options, set those fields (others are kept). "
        "Without NAME, list every configured queue. The server reads it at once, running or not.",
    )
    _add_db_argument(queue)
    queue.add_argument("name", nargs="?", metavar="NAME", help="the PanDA queue")
    queue.add_argument("--harvester", metavar="ID", help="the pilot factory (harvester_id) that serves the queue")
    queue.add_argument(
        "--ce", action="append", metavar="ENDPOINT", help="a CE of the queue (repeat); replaces the list"
    )
    queue.add_argument("--corecount", type=int, help="cores per pilot")
    queue.add_argument("--maxrss", type=int, metavar="MB", help="memory per pilot")
    queue.add_argument("--status", choices=QUEUE_STATUSES, help="the queue's status")
    queue.add_argument(
        "--ups", action="store_true", help="unified pilot streaming: capability ucore, workflow pull_ups"
    )
    queue.add_argument("--delete", action="store_true", help="remove the queue's configuration")
    queue.set_defaults(func=queue_command)


def _add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        help="its SQLite file (default $AUTOPILOT_HOME/panda-devserver.db, "
        "AUTOPILOT_HOME defaulting to ./.autopilot)",
    )


def serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    authenticator = _authenticator(args)
    if authenticator.mode == "open" and not is_loopback(args.host):
        raise CommandError(f"--auth open gives everyone the production role; it is refused on {args.host}")
    if args.heartbeat_timeout < 0:
        raise CommandError(f"--heartbeat-timeout must be 0 or more, got {args.heartbeat_timeout:g}")
    config = ServerConfig(
        db=args.db or default_db(),
        host=args.host,
        port=args.port,
        files_dir=args.files,
        authenticator=authenticator,
        legacy=args.legacy,
        heartbeat_timeout=args.heartbeat_timeout or None,
        access_log=None if args.quiet else sys.stderr,
    )
    try:
        server = PandaDevServer(config)
    except (ServerError, DatabaseError) as exc:
        raise CommandError(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    gc.freeze()  # what exists now lives as long as the process: keep it out of every collection
    server.start()
    stop.wait()
    server.stop()
    return 0


def submit_command(args: argparse.Namespace) -> int:
    from autopilot_ops.panda.devserver.submitter import SubmitError, submit_specs  # urllib.request: only here

    if args.count < 1:
        raise CommandError(f"--count must be at least 1, got {args.count}")
    try:
        specs = [
            build_job_spec(
                args.queue,
                args.transformation,
                args.job_pars,
                priority=args.priority,
                prod_source_label=args.prod_source_label,
                in_files=args.in_file,
                out_files=args.out_file,
                log_file=not args.no_log_file,
            )
            for _ in range(args.count)
        ]
        replies = submit_specs(args.server, specs, token=_read_token(args.token_file, required=False))
    except (JobSpecError, SubmitError) as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(replies))
    else:
        rows = [{"panda_id": r[0], "job_definition_id": r[1], "job_name": r[2]} for r in replies]
        print_table(rows, ["panda_id", "job_definition_id", "job_name"])
    return 0


def jobs_command(args: argparse.Namespace) -> int:
    target = args.db or str(default_db())
    if not Path(target).is_file():
        raise CommandError(f"no dev server database at {target} (give --db, or start the server first)")
    try:
        database = Database(target)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    try:
        store = JobStore(database)
        if args.id is not None:
            job = store.job(args.id)
            if job is None:
                raise CommandError(f"no job {args.id} in {database.describe()}")
            print(json.dumps(job, indent=2))
            return 0
        jobs = store.jobs(args.queue)
    finally:
        database.close()
    if args.json:
        print(json.dumps(jobs, indent=2))
    else:
        print_table(
            jobs,
            ["panda_id", "site", "status", "priority", "modified", "node", "trans_exit_code", "pilot_error_code"],
        )
    return 0


def queue_command(args: argparse.Namespace) -> int:
    changes = queue_changes(args)
    if args.name is None and (changes or args.delete):
        raise CommandError("give the queue's NAME to set or delete its configuration")
    if args.delete and changes:
        raise CommandError("--delete takes no other option")
    database = _open_database(args.db)
    try:
        queues = QueueConfigs(database)
        if args.name is None:
            configured = queues.all()
            print_table(
                [{"queue": name, **summary(data)} for name, data in configured.items()],
                ["queue", "harvester", "status", "corecount", "ces", "ups"],
            )
            return 0
        if args.delete:
            if not queues.delete(args.name):
                raise CommandError(f"no configuration of queue {args.name} in {database.describe()}")
            return 0
        data = queues.get(args.name)
        if data is None and not changes:
            raise CommandError(f"no configuration of queue {args.name} in {database.describe()}")
        if changes:
            data = {"queues": [], **(data or {}), **changes}
            queues.set(args.name, data)
    finally:
        database.close()
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def queue_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The schedconfig fields the options set."""
    changes: dict[str, Any] = {}
    if args.harvester is not None:
        changes["harvester"] = args.harvester
    if args.ce is not None:
        changes["queues"] = [{"ce_endpoint": endpoint} for endpoint in args.ce]
    for field in ("corecount", "maxrss"):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                raise CommandError(f"--{field} must be at least 1, got {value}")
            changes[field] = value
    if args.status is not None:
        changes["status"] = args.status
    if args.ups:
        changes.update(capability="ucore", workflow="pull_ups")
    return changes


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """One queue's configuration as a row of ``queue``'s list."""
    return {
        "harvester": data.get("harvester", ""),
        "status": data.get("status", ""),
        "corecount": data.get("corecount", ""),
        "ces": " ".join(str(ce.get("ce_endpoint", "")) for ce in data.get("queues") or [] if isinstance(ce, dict)),
        "ups": "yes" if data.get("capability") == "ucore" and data.get("workflow") == "pull_ups" else "",
    }


def _open_database(db: str | None) -> Database:
    """The dev server's database named by ``--db`` (created if missing, as the server does)."""
    try:
        return Database(db or str(default_db()))
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None


def _authenticator(args: argparse.Namespace) -> Authenticator:
    try:
        if args.auth == "token":
            return TokenAuthenticator(_read_token(args.token_file, required=True) or "")
        if args.auth == "identities":
            if args.identities is None:
                raise CommandError("--auth identities needs --identities FILE")
            return load_identities(args.identities)
    except AuthConfigError as exc:
        raise CommandError(str(exc)) from None
    return open_authenticator()


def _read_token(path: Path | None, required: bool) -> str | None:
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CommandError(f"cannot read token file {path}: {exc.strerror}") from None
        if not token:
            raise CommandError(f"token file {path} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if required and not token:
        raise CommandError(f"--auth token needs --token-file FILE or ${TOKEN_ENV}")
    return token or None
