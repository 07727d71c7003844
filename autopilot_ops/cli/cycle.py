"""``autopilot cycle TAG [--dry-run]``: one scheduling cycle in the foreground, without Airflow's scheduler.

It runs what a tag's DAG task runs (:class:`~autopilot_ops.scheduler.cycle.SchedulingCycle`): observe, take
PanDA's commands, decide, submit, record, and report the pilots to PanDA as a pilot factory; with
``--dry-run`` it only observes and decides, changing nothing. It is what ``pilotScheduler.py --tag=...`` was:
for debugging, for cron, and for tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

from autopilot_ops.cli.common import add_dsn_argument, open_store
from autopilot_ops.errors import CommandError
from autopilot_ops.panda import protocol

DEFAULT_PANDA_URL = f"http://127.0.0.1:{protocol.DEFAULT_PORT}"


def register(subparsers: argparse._SubParsersAction) -> None:
    cycle = subparsers.add_parser("cycle", help="run one scheduling cycle of a tag now, in the foreground")
    cycle.add_argument("tag", help="the scheduler tag whose queues to cycle")
    cycle.add_argument("--dry-run", action="store_true", help="observe and decide only; change nothing")
    add_dsn_argument(cycle)
    cycle.add_argument(
        "--panda-url",
        default=os.environ.get("AUTOPILOT_PANDA_URL", DEFAULT_PANDA_URL),
        help=f"PanDA server (default: $AUTOPILOT_PANDA_URL, else {DEFAULT_PANDA_URL}); a token is read from "
        "$AUTOPILOT_PANDA_TOKEN",
    )
    cycle.add_argument(
        "--harvester-id",
        default=os.environ.get("AUTOPILOT_HARVESTER_ID"),
        help="this deployment's pilot-factory id (default: $AUTOPILOT_HARVESTER_ID, else autopilot-<host>)",
    )
    cycle.add_argument("--no-factory", action="store_true", help="do not act as a pilot factory of PanDA")
    cycle.add_argument("--cycle-id", help="the cycle's id (default: cli-<UTC time>)")
    cycle.set_defaults(func=cycle_command)


def cycle_command(args: argparse.Namespace) -> int:
    from autopilot_ops.airflow.config import SchedulerConfig, cycle_id_for, scheduler_id_for
    from autopilot_ops.airflow.hooks.backend_factory import connection_backend
    from autopilot_ops.airflow.hooks.panda import FACTORY_RETRY, FACTORY_TIMEOUT_S, default_harvester_id
    from autopilot_ops.panda.client import PandaAuth, PandaClient
    from autopilot_ops.panda.errors import PandaError
    from autopilot_ops.panda.factory import FactoryClient
    from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
    from autopilot_ops.scheduler.job_stats import job_stats

    defaults = SchedulerConfig.from_airflow_conf()
    auth = PandaAuth(token=os.environ.get("AUTOPILOT_PANDA_TOKEN") or None)
    try:
        client = PandaClient(args.panda_url, auth=auth)
        factory = None
        if not args.no_factory and not args.dry_run:
            factory_client = PandaClient(args.panda_url, auth=auth, retry=FACTORY_RETRY, timeout=FACTORY_TIMEOUT_S)
            factory = FactoryClient(factory_client, args.harvester_id or default_harvester_id())
    except PandaError as exc:
        raise CommandError(f"--panda-url {args.panda_url}: {exc.detail}") from None
    settings = CycleSettings(
        tag=args.tag,
        scheduler_id=scheduler_id_for(args.tag, defaults.deployment_id),
        pilot_command=defaults.pilot_command,
        log_root=defaults.log_root,
        panda_url=client.url,
        global_cap=defaults.global_cap,
        monitor_url=defaults.monitor_url,
        bundles=defaults.bundles,
    )
    cycle_id = args.cycle_id or f"cli-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    cycle_id = cycle_id_for(cycle_id, defaults.deployment_id)
    with open_store(args) as store:
        cycle = SchedulingCycle(
            store, settings, lambda: job_stats(client), client, connection_backend, factory=factory
        )
        report = cycle.run(cycle_id, dry_run=args.dry_run)
    for line in report.lines():
        print(line)
    if not report.results and not report.busy:
        print(f"tag {args.tag} has no queues (see `autopilot queues list`)")
    return 0
