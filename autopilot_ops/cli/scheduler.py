"""``autopilot scheduler list | start | stop | trigger | status TAG``: the schedulers are Airflow DAGs.

Talks to Airflow's REST API v2: a JWT from ``POST /auth/token`` (username and password), then
``GET /api/v2/dags`` (the scheduler DAGs carry the DAG tags ``autopilot`` and ``scheduler``), ``PATCH
/api/v2/dags/{dag_id}`` with ``is_paused`` (start = unpause, stop = pause), ``POST
/api/v2/dags/{dag_id}/dagRuns`` (one cycle now) and ``GET .../dagRuns`` (recent cycles).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from autopilot_ops.airflow.naming import SCHEDULER_DAG_TAGS, scheduler_dag_id, tag_of_dag
from autopilot_ops.airflow.rest_api import AirflowAPI
from autopilot_ops.cli.common import print_json, print_table
from autopilot_ops.errors import CommandError

DEFAULT_URL = "http://127.0.0.1:8080"
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scheduler", help="start, stop and inspect the per-tag scheduler DAGs")
    parser.add_argument("--airflow-url", default=os.environ.get("AUTOPILOT_AIRFLOW_URL", DEFAULT_URL),
                        help="Airflow API server (default: $AUTOPILOT_AIRFLOW_URL, else %(default)s)")
    parser.add_argument("--user", default=os.environ.get("AUTOPILOT_AIRFLOW_USER"),
                        help="Airflow user (default: $AUTOPILOT_AIRFLOW_USER)")
    parser.add_argument("--password", default=os.environ.get("AUTOPILOT_AIRFLOW_PASSWORD"),
                        help="its password (default: $AUTOPILOT_AIRFLOW_PASSWORD, which keeps it off the "
                             "process list)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every scheduler DAG, with its state").set_defaults(func=cmd_list)
    for name, func, text in (
        ("start", cmd_start, "unpause the tag's DAG: the scheduler runs cycles on its schedule"),
        ("stop", cmd_stop, "pause the tag's DAG: no new cycle starts"),
        ("trigger", cmd_trigger, "run one cycle now"),
        ("status", cmd_status, "the tag's DAG state and its recent cycles"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("tag")
        action.set_defaults(func=func)


def _api(args: argparse.Namespace) -> AirflowAPI:
    if not args.user or not args.password:
        raise CommandError("give an Airflow user and password: --user and $AUTOPILOT_AIRFLOW_PASSWORD "
                           "(or $AUTOPILOT_AIRFLOW_USER)")
    return AirflowAPI.login(args.airflow_url, args.user, args.password)


def _state(dag: dict[str, Any]) -> str:
    return "stopped" if dag.get("is_paused") else "running"


def cmd_list(args: argparse.Namespace) -> int:
    api = _api(args)
    dags: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = api.call("GET", "/api/v2/dags", "list of scheduler DAGs",
                        params={"tags": list(SCHEDULER_DAG_TAGS), "tags_match_mode": "all", "limit": 100,
                                "offset": offset, "order_by": "dag_id"})
        batch = page.get("dags", [])
        dags += batch
        offset += len(batch)
        if not batch or offset >= int(page.get("total_entries", 0)):
            break
    rows = [{"tag": tag_of_dag(d["dag_id"]), "dag_id": d["dag_id"], "state": _state(d),
             "next_cycle": d.get("next_dagrun_run_after")} for d in dags]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["tag", "dag_id", "state", "next_cycle"])
    return 0


def _set_paused(args: argparse.Namespace, paused: bool) -> int:
    dag_id = scheduler_dag_id(args.tag)
    dag = _api(args).call("PATCH", f"/api/v2/dags/{dag_id}", f"scheduler DAG {dag_id} of tag {args.tag!r}",
                          json={"is_paused": paused})
    if dag.get("is_paused") is not paused:
        raise CommandError(f"Airflow did not {'pause' if paused else 'unpause'} {dag_id}")
    result = {"tag": args.tag, "dag_id": dag_id, "state": _state(dag)}
    if args.json:
        print_json(result)
    else:
        print(f"scheduler {args.tag} ({dag_id}): {result['state']}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    return _set_paused(args, False)


def cmd_stop(args: argparse.Namespace) -> int:
    return _set_paused(args, True)


def cmd_trigger(args: argparse.Namespace) -> int:
    dag_id = scheduler_dag_id(args.tag)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    run = _api(args).call("POST", f"/api/v2/dags/{dag_id}/dagRuns", f"scheduler DAG {dag_id} of tag {args.tag!r}",
                          json={"logical_date": now, "note": "triggered with autopilot scheduler trigger"})
    result = {"tag": args.tag, "dag_id": dag_id, "dag_run_id": run.get("dag_run_id"), "state": run.get("state")}
    if args.json:
        print_json(result)
    else:
        print(f"scheduler {args.tag}: cycle {result['dag_run_id']} {result['state']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    api = _api(args)
    dag_id = scheduler_dag_id(args.tag)
    what = f"scheduler DAG {dag_id} of tag {args.tag!r}"
    dag = api.call("GET", f"/api/v2/dags/{dag_id}", what)
    runs = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns", what,
                    params={"order_by": "-run_after", "limit": 10}).get("dag_runs", [])
    cycles = [{key: run.get(key) for key in ("dag_run_id", "state", "run_after", "start_date", "end_date")}
              for run in runs]
    result = {"tag": args.tag, "dag_id": dag_id, "state": _state(dag),
              "next_cycle": dag.get("next_dagrun_run_after"), "cycles": cycles}
    if args.json:
        print_json(result)
        return 0
    print(f"scheduler {args.tag} ({dag_id}): {result['state']}, next cycle {result['next_cycle'] or '-'}")
    print_table(cycles, ["dag_run_id", "state", "run_after", "start_date", "end_date"])
    return 0
