"""``autopilot pilot run | show-job | resend``: the generic pilot from a terminal or a batch job.

This module stays import-light (no database, no Airflow): batch jobs run it as ``python -m
autopilot_ops.pilot``, and the ``autopilot`` command adds it as its ``pilot`` command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from autopilot_ops.errors import CommandError
from autopilot_ops.panda import protocol
from autopilot_ops.panda.client import PandaAuth, RetryPolicy
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.config import PilotConfig, default_home, default_kept_dir
from autopilot_ops.pilot.job import JobDefinitionError, describe, parse_job
from autopilot_ops.pilot.payload import PASS_CREDENTIALS_VARIABLE
from autopilot_ops.pilot.slot import slot_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SERVER = f"http://127.0.0.1:{protocol.DEFAULT_PORT}"


def register(subparsers: argparse._SubParsersAction, *, bundle_command: bool = True) -> None:
    """Add ``pilot run | show-job | resend``, and ``pilot bundle`` unless ``bundle_command`` is false."""
    pilot = subparsers.add_parser("pilot", help="run the generic PanDA pilot, inspect jobs, resend reports")
    commands = pilot.add_subparsers(dest="pilot_command", required=True)

    run = commands.add_parser("run", help="get PanDA jobs for a queue and run them")
    _add_run_arguments(run)
    run.set_defaults(func=run_command)

    show = commands.add_parser("show-job", help="pretty-print a saved job dict (or acquire_jobs reply)")
    show.add_argument("job_file", metavar="JOB.json", type=Path)
    show.add_argument("--json", action="store_true", help="print the parsed job as JSON")
    show.set_defaults(func=show_job_command)

    resend = commands.add_parser("resend", help="send the final job updates kept on this node")
    resend.add_argument("--home", type=Path, default=None, help="pilot home (default: $AUTOPILOT_PILOT_HOME)")
    resend.add_argument("--server", help="send them here instead of to the server each was meant for")
    _add_auth_arguments(resend)
    resend.set_defaults(func=resend_command)

    if bundle_command:
        bundle = commands.add_parser("bundle", help="build the pilot as one zipapp for bare worker nodes")
        bundle.add_argument(
            "-o", "--output", type=Path, default=Path("."), metavar="DIR", help="where to write it (default: .)"
        )
        bundle.set_defaults(func=build_bundle_command)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    auth = parser.add_argument_group("authentication")
    auth.add_argument(
        "--proxy",
        default=os.environ.get("X509_USER_PROXY"),
        help="X.509 proxy used as client certificate (default: $X509_USER_PROXY)",
    )
    auth.add_argument("--key", help="private key, when the certificate file does not hold it")
    auth.add_argument(
        "--token-file",
        default=os.environ.get("PANDA_AUTH_TOKEN_FILE"),
        help="file holding a bearer token (default: $PANDA_AUTH_TOKEN_FILE)",
    )
    auth.add_argument(
        "--origin",
        default=os.environ.get("PANDA_AUTH_ORIGIN"),
        help="Origin header sent with the token (default: $PANDA_AUTH_ORIGIN)",
    )
    auth.add_argument(
        "--ca-bundle",
        default=os.environ.get("X509_CERT_DIR"),
        help="CA file or directory to verify the server (default: $X509_CERT_DIR)",
    )
    auth.add_argument("--retries", type=int, default=4, help="tries per server call (default 4)")
    auth.add_argument(
        "--backoff", type=float, default=1.0, help="base of the jittered exponential backoff, s (default 1)"
    )


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--queue", required=True, help="PanDA queue (site_name) to get jobs for")
    run.add_argument(
        "--server",
        default=os.environ.get("PANDA_URL", DEFAULT_SERVER),
        help=f"PanDA server URL (default: $PANDA_URL, else {DEFAULT_SERVER})",
    )
    run.add_argument(
        "--protocol",
        choices=("v1", "legacy"),
        default="v1",
        help="v1: PanDA 1.0 /api/v1 (default); legacy: /server/panda for servers up to 0.8",
    )
    _add_auth_arguments(run)
    jobs = run.add_argument_group("jobs")
    jobs.add_argument("--once", action="store_true", help="run one job, then exit")
    jobs.add_argument("--max-jobs", type=int, help="run at most N jobs")
    jobs.add_argument(
        "--time-floor",
        type=float,
        default=0.0,
        help="keep taking jobs while the pilot has run less than this many seconds",
    )
    jobs.add_argument("--prod-source-label", default="managed")
    jobs.add_argument("--resource-type")
    jobs.add_argument("--computing-element")
    jobs.add_argument("--memory", type=int, help="MB of memory this slot offers")
    jobs.add_argument("--disk-space", type=int, help="MB of disk this slot offers")
    jobs.add_argument("--job-file", type=Path, help="replay this saved job dict instead of acquiring one")
    jobs.add_argument("--dry-run", action="store_true", help="contact no server: updates are only printed")
    limits = run.add_argument_group("payload")
    limits.add_argument("--heartbeat", type=float, default=1800.0, help="seconds between heartbeats")
    limits.add_argument("--kill-grace", type=float, default=10.0, help="seconds from SIGTERM to SIGKILL")
    limits.add_argument("--memory-poll", type=float, default=5.0, help="seconds between memory and disk checks")
    limits.add_argument(
        "--min-free-space",
        type=int,
        default=1024,
        metavar="MB",
        help="stop the payload when its work dir's disk has less free space (default: 1024, as pilot3)",
    )
    limits.add_argument("--memory-factor", type=float, default=1.0, help="memory limit = minRamCount * this")
    limits.add_argument(
        "--allow-url-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="transformation URLs may start with PREFIX (repeatable)",
    )
    limits.add_argument(
        "--trf-sha256",
        action="append",
        default=[],
        type=_key_value,
        metavar="URL=SHA256",
        help="pin the sha256 of a transformation URL (repeatable)",
    )
    limits.add_argument(
        "--pass-credentials",
        action="store_true",
        default=os.environ.get(PASS_CREDENTIALS_VARIABLE) == "1",
        help="give the payload the proxy, token file and origin this pilot uses; by default its environment has"
        f" none of them (default: ${PASS_CREDENTIALS_VARIABLE}=1)",
    )
    limits.add_argument("--vo", default="generic", help="VO plugin (entry point in autopilot.vo)")
    limits.add_argument("--vo-option", action="append", default=[], type=_key_value, metavar="KEY=VALUE")
    final = run.add_argument_group("final update")
    final.add_argument(
        "--final-patience",
        type=float,
        default=1800.0,
        help="seconds to keep retrying a final update while the server is down (default 1800)",
    )
    final.add_argument(
        "--kept-dir",
        type=Path,
        default=None,
        help="hand a final update that could not be delivered to this directory, which the scheduler sends"
        " on; created at start, a relative path in the directory the pilot starts in (default:"
        " $AUTOPILOT_KEPT_DIR, set by the back ends; HTCondor with file transfer brings it back from the job's"
        " scratch dir)",
    )
    final.add_argument(
        "--slot-end",
        type=float,
        default=None,
        help="epoch time the batch slot ends; retries stop before it "
        "(default: $AUTOPILOT_SLOT_END, else Slurm's $SLURM_JOB_END_TIME)",
    )
    storage = run.add_argument_group("files")
    storage.add_argument("--workdir", type=Path, default=Path.cwd(), help="where job work dirs are made")
    storage.add_argument("--keep-workdir", action="store_true", help="keep each job's work dir")
    storage.add_argument(
        "--home",
        type=Path,
        default=None,
        help="pilot home: kept updates, default storage (default: $AUTOPILOT_PILOT_HOME)",
    )
    fields = "{scope}, {lfn}, {dataset}, {guid}, {rse}"
    storage.add_argument("--input-url", help=f"input URL template ({fields}), e.g. file:///data/{{scope}}/{{lfn}}")
    storage.add_argument("--output-url", help=f"output URL template ({fields}), e.g. https://se/{{scope}}/{{lfn}}")
    storage.add_argument("--mover", help="data mover to use for every URL (default: by URL scheme)")
    storage.add_argument("--mover-option", action="append", default=[], type=_key_value, metavar="KEY=VALUE")
    monitor = run.add_argument_group("monitoring and output")
    monitor.add_argument("--monitor-url", default=os.environ.get("AUTOPILOT_MONITOR_URL"))
    monitor.add_argument("--monitor-token-file", default=os.environ.get("AUTOPILOT_MONITOR_TOKEN_FILE"))
    monitor.add_argument(
        "--interactive", action="store_true", help="stream the payload's output and show a status line"
    )
    monitor.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _read_secret(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise CommandError(f"the {what} file {path} is empty")
    return value


def _auth(args: argparse.Namespace) -> PandaAuth:
    for option, path in (("--proxy", args.proxy), ("--ca-bundle", args.ca_bundle)):
        if path and not Path(path).exists():
            raise CommandError(f"{option} {path} does not exist")
    return PandaAuth(
        cert=args.proxy,
        key=args.key,
        token=_read_secret(args.token_file, "token"),
        origin=args.origin,
        ca_bundle=args.ca_bundle,
    )


def config_from_args(args: argparse.Namespace) -> PilotConfig:
    """The pilot configuration that ``autopilot pilot run`` options describe."""
    if args.max_jobs is not None and args.max_jobs < 1:
        raise CommandError("--max-jobs must be at least 1")
    if args.retries < 1:
        raise CommandError("--retries must be at least 1")
    if args.final_patience < 0:
        raise CommandError(f"--final-patience must be 0 or more seconds, got {args.final_patience}")
    try:
        end = args.slot_end if args.slot_end is not None else slot_end(os.environ)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return PilotConfig(
        queue=args.queue,
        server_url=args.server,
        protocol=args.protocol,
        auth=_auth(args),
        retry=RetryPolicy(attempts=args.retries, backoff=args.backoff),
        prod_source_label=args.prod_source_label,
        resource_type=args.resource_type,
        computing_element=args.computing_element,
        memory_mb=args.memory,
        disk_space_mb=args.disk_space,
        time_floor=args.time_floor,
        max_jobs=args.max_jobs,
        once=args.once,
        heartbeat_interval=args.heartbeat,
        kill_grace=args.kill_grace,
        memory_poll=args.memory_poll,
        min_free_space_mb=args.min_free_space,
        memory_factor=args.memory_factor,
        workdir=args.workdir.resolve(),
        keep_workdir=args.keep_workdir,
        home=(args.home or default_home()).resolve(),
        allow_url_prefixes=tuple(args.allow_url_prefix),
        trf_sha256=dict(args.trf_sha256),
        input_url=args.input_url,
        output_url=args.output_url,
        mover=args.mover,
        mover_options=dict(args.mover_option),
        vo=args.vo,
        vo_options=dict(args.vo_option),
        monitor_url=args.monitor_url,
        monitor_token=_read_secret(args.monitor_token_file, "monitor token"),
        interactive=args.interactive,
        final_patience=args.final_patience,
        slot_end=end,
        kept_dir=_absolute(args.kept_dir or default_kept_dir()),
    )


def _absolute(path: Path | None) -> Path | None:
    """A relative path taken from where the pilot started (a batch job's scratch dir), once."""
    return path.absolute() if path is not None else None


def _export_credentials(args: argparse.Namespace) -> None:
    """With ``--pass-credentials``, the variables through which the payload finds this pilot's credentials (files
    as absolute paths: the payload runs in a directory of its own)."""
    if not args.pass_credentials:
        return
    exported = {PASS_CREDENTIALS_VARIABLE: "1"}
    for name, value in (("X509_USER_PROXY", args.proxy), ("PANDA_AUTH_TOKEN_FILE", args.token_file)):
        if value:
            exported[name] = os.path.abspath(value)
    if args.origin:
        exported["PANDA_AUTH_ORIGIN"] = args.origin
    os.environ.update(exported)


def load_job_file(path: Path) -> list[dict[str, Any]]:
    """Job dicts from a file holding one job dict, a list of them, or a saved ``acquire_jobs`` reply."""
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read job file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CommandError(f"job file {path} is not JSON: {exc}") from None
    if isinstance(value, dict) and "data" in value and "success" in value:
        value = value["data"]
    if isinstance(value, dict) and "jobs" in value:
        value = value["jobs"]
    jobs = value if isinstance(value, list) else [value]
    if not jobs or not all(isinstance(job, dict) for job in jobs):
        raise CommandError(f"job file {path} holds no job dict (expected an object, a list, or an acquire_jobs reply)")
    return jobs


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def run_command(args: argparse.Namespace) -> int:
    from autopilot_ops.pilot.loop import Pilot, make_client

    _setup_logging(args.verbose)
    config = config_from_args(args)
    _export_credentials(args)
    jobs = load_job_file(args.job_file) if args.job_file else None
    if args.dry_run and jobs is None:
        request = {
            "site_name": config.queue,
            "prod_source_label": config.prod_source_label,
            "node": config.node,
            "computing_element": config.computing_element,
            "memory": config.memory_mb,
            "disk_space": config.disk_space_mb,
            "resource_type": config.resource_type,
            "n_jobs": 1,
        }
        path = (
            protocol.legacy_path("getJob")
            if config.protocol == "legacy"
            else protocol.api_path("pilot", "acquire_jobs")
        )
        shown = {key: value for key, value in request.items() if value is not None}
        print(f"dry run: would POST {config.server_url}{path} {json.dumps(shown, sort_keys=True)}")
        return 0
    try:
        client = None if args.dry_run else make_client(config)
    except PandaError as exc:  # a bad server URL or auth combination, named by the client
        raise CommandError(str(exc)) from None
    try:
        return Pilot(config, client, jobs).run()
    finally:
        if client is not None:
            client.close()


def build_bundle_command(args: argparse.Namespace) -> int:
    """Build ``autopilot-pilot-<version>.pyz`` and its ``.sha256`` in ``--output``."""
    from autopilot_ops.pilot.bundle import BundleError, build_bundle

    try:
        bundle = build_bundle(args.output)
    except (BundleError, OSError) as exc:
        raise CommandError(f"cannot build the pilot bundle in {args.output}: {exc}") from None
    print(f"{bundle.path} version={bundle.version} size={bundle.size} sha256={bundle.sha256}")
    return 0


def show_job_command(args: argparse.Namespace) -> int:
    jobs = load_job_file(args.job_file)
    for index, raw in enumerate(jobs):
        try:
            job = parse_job(raw)
        except JobDefinitionError as exc:
            raise CommandError(f"{args.job_file}: {exc}") from None
        if args.json:
            print(json.dumps({k: v for k, v in vars(job).items() if k != "raw"}, indent=2, default=vars))
        else:
            print(("\n" if index else "") + describe(job))
    return 0


def resend_command(args: argparse.Namespace) -> int:
    from autopilot_ops.panda.client import PandaClient
    from autopilot_ops.pilot.outbox import Outbox

    _setup_logging(False)
    auth = _auth(args)
    retry = RetryPolicy(attempts=args.retries, backoff=args.backoff)
    home = (args.home or default_home()).resolve()
    outbox = Outbox(PilotConfig(queue="-", home=home).outbox)
    clients: dict[tuple[str, str], PandaClient] = {}

    def client_for(update: Any) -> PandaClient:
        key = (args.server or update.server_url, update.protocol)
        if key not in clients:
            clients[key] = PandaClient(key[0], protocol_name=key[1], auth=auth, retry=retry)
        return clients[key]

    summary = outbox.resend(client_for)
    for client in clients.values():
        client.close()
    print(f"delivered {summary.sent}, rejected {summary.rejected}, still pending {summary.pending}")
    return errorcodes.EXIT_COMMUNICATIONFAILURE if summary.pending else 0
