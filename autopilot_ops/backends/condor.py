"""HTCondor back ends, through the ``htcondor2`` bindings: a local pool (vanilla universe) and
HTCondor-CE / ARC-CE endpoints (grid universe).

Each cycle's pilots go to the schedd in one transaction (``Schedd.submit(Submit, count=n)``), as one
cluster; batch ids are ``<cluster>.<proc>``. Every pilot carries the custom attributes ``AutoPilotQueue``,
``AutoPilotCycle`` and ``AutoPilotScheduler``, so they are found again by constraint, never by guessing
cluster ids (the job queue outlives schedd restarts).

Parameters (the ``backends.parameters`` of the row; the spec's ``parameters`` override the submission
ones for one queue):

- connection: ``pool`` (collector ``host[:port]``; default: the ``CONDOR_HOST`` config),
  ``schedd`` (schedd name; default: the pool's schedd), ``token_dir`` (``SEC_TOKEN_DIRECTORY``),
  ``config`` (mapping of HTCondor config knobs), ``config_file`` (a file of ``_CONDOR_<KNOB>=value``
  lines, such as the ``client.env`` that ``scripts/condor-local.sh`` writes; other lines are ignored).
  Knobs apply in-process through ``htcondor2.param``; ``_CONDOR_*`` variables in the environment
  apply too (htcondor2 reads them at import). HTCondor caches security sessions per process, so one
  process talks to one schedd under one identity.
- ``job_owner``: the user that owns the pilots. Only that user's pilots are looked at; when the
  scheduler runs as root (acting for that user with a token), the log directories it creates are
  handed to that user, who must be able to write them.
- ``history_s``: how far back the schedd's history is read for pilots that left the queue (default
  2 days); older pilots are unknown to ``status`` and ``find_pilots``.
- limits in the submit description: ``max_idle_s`` (remove pilots idle longer, default 48 h),
  ``max_held_s`` (remove pilots held longer, default 1 h; ``None`` leaves it to ``remove_held``),
  and the spec's ``walltime_s`` (hold pilots running longer).
- ``submit``: extra submit commands, added last (for example ``requirements`` or ``+AccountingGroup``).

A queue's credential (``PilotSpec.credential``) travels with the job: a proxy as ``x509userproxy``, a PanDA token
in ``transfer_input_files`` (the pilot reads it from its scratch directory, by ``PANDA_AUTH_TOKEN_FILE``); through
a CE the token is also HTCondor's ``scitokens_file`` unless the back end names one. HTCondor reads the files when
it submits, so a replaced file reaches the next cycle's pilots.

The local pool of ``scripts/condor-local.sh`` runs jobs inside a Debian 13 chroot that shares only
``/tmp`` with the host: the pilot command, its interpreter and the log root must exist there (put
scripts and logs under ``/tmp``; host virtualenvs such as the one ``autopilot pilot run`` lives in
are not visible), and the log root must be traversable by the job owner. Point ``config_file`` at
the ``client.env`` it writes and set ``job_owner`` to its job owner (``autopilot``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import grp
import logging
import math
import os
import pwd
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import htcondor2
from htcondor2 import classad

from autopilot_ops.backends.base import (
    PILOT_ID_VARIABLE,
    PILOT_INDEX_VARIABLE,
    Backend,
    BackendError,
    PilotSpec,
    PilotState,
    PilotStatus,
    SubmittedPilot,
)
from autopilot_ops.backends.credentials import PROXY_VARIABLE, pilot_environment
from autopilot_ops.credentials.lifetime import CredentialUnusable, proxy_expiry
from autopilot_ops.credentials.model import PROXY, TOKEN
from autopilot_ops.pilot.config import KEPT_DIR_VARIABLE

TAG_QUEUE = "AutoPilotQueue"
TAG_CYCLE = "AutoPilotCycle"
TAG_SCHEDULER = "AutoPilotScheduler"

DEFAULT_MAX_IDLE_S = 48 * 3600
DEFAULT_MAX_HELD_S = 3600
DEFAULT_HISTORY_S = 2 * 86400

_PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "HoldReason",
    "RemoveReason",
    "JobCurrentStartDate",
    "JobStartDate",
    "CompletionDate",
    "EnteredCurrentStatus",
]
log = logging.getLogger(__name__)

_BATCH_ID = re.compile(r"^(\d+)\.(\d+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: Files go with the job (the executable, input files) and its output comes back, streamed to the log directory
#: while it runs: for nodes that share nothing with this host.
FILE_TRANSFER = {
    "should_transfer_files": "YES",
    "when_to_transfer_output": "ON_EXIT",
    "stream_output": "True",
    "stream_error": "True",
}

#: Under file transfer, the pilot's kept dir (``AUTOPILOT_KEPT_DIR``: the final updates it could not deliver) is
#: this directory of its scratch dir, where HTCondor starts it. HTCondor 23.9 brings a directory named in
#: ``transfer_output_files`` back whole, renamed by the remap: ``<log dir>/<cluster>.<proc>.kept/``, an empty one
#: too; a missing one puts the job on hold ("Transfer output files failure"), so the wrapper and the pilot create it
#: first thing. The sweep moves what came back into the scheduler's kept dir (``scheduler/kept_updates.py``).
KEPT_OUTPUT = "autopilot-kept"
KEPT_TRANSFER = {
    "transfer_output_files": KEPT_OUTPUT,
    "transfer_output_remaps": f'"{KEPT_OUTPUT} = $(Cluster).$(Process).kept"',
}

class CondorBackend(Backend):
    """Pilots as vanilla-universe jobs of an HTCondor pool. A pilot command whose first word is a script here,
    such as the wrapper, has it sent with the job (file transfer, output streamed back) unless the back end's
    ``transfer_executable`` is false, so execute nodes need share nothing with this host."""

    kind = "condor"

    # -- the Backend interface ------------------------------------------------------------------

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        if n <= 0:
            return []
        log_dir = spec.log_dir()
        description = self.submit_description(spec, log_dir)
        self._make_log_dir(log_dir)
        with self._calling(f"submit of {n} pilots for queue {spec.queue!r}"):
            result = self._schedd().submit(htcondor2.Submit(description), count=n)
        cluster, first, count = result.cluster(), result.first_proc(), result.num_procs()
        if count != n:  # the ones made are returned (and recorded), never lost; the rest count as missed
            log.warning("back end %r: HTCondor accepted %d of %d pilots in cluster %d", self.name, count, n, cluster)
        return [
            SubmittedPilot(
                batch_id=f"{cluster}.{proc}",
                stdout=log_dir / f"{cluster}.{proc}.out",
                stderr=log_dir / f"{cluster}.{proc}.err",
                index=proc,
            )
            for proc in range(first, first + count)
        ]

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        ads = self._ads_by_id(batch_ids, _PROJECTION)
        return {batch_id: pilot_status(ad) for batch_id, ad in ads.items()}

    def cancel(self, batch_ids: Sequence[str]) -> None:
        ids = [f"{c}.{p}" for c, p in sorted(parse_batch_ids(batch_ids))]
        if not ids:
            return
        # reason as a tuple: htcondor2 25.14.1 drops a plain string reason (see Schedd.act in _schedd.py).
        with self._calling(f"removal of {len(ids)} pilots"):
            self._schedd().act(htcondor2.JobAction.Remove, ids, reason=("AutoPilot: cancelled", None))

    def log_paths(self, batch_id: str) -> tuple[Path, Path] | None:
        ad = self._ads_by_id([batch_id], ["ClusterId", "ProcId", "Out", "Err", "Iwd"]).get(batch_id)
        if ad is None or "Out" not in ad or "Err" not in ad:
            return None
        iwd = Path(ad.get("Iwd", "/"))
        return iwd / ad["Out"], iwd / ad["Err"]

    def returned_kept_dir(self, batch_id: str, stdout: Path) -> Path:
        """Where HTCondor brought back the pilot's kept dir (``KEPT_TRANSFER``): next to its stdout."""
        return stdout.parent / f"{batch_id}.kept"

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """The pilots tagged ``(queue, cycle_id)``, in the queue and in the history. The history (kept in
        the order jobs left the queue) is read back to the submission when some pilots are still queued,
        else over the last ``history_s`` seconds. ``None`` when the schedd cannot be asked (an empty answer
        would settle the key as missed)."""
        constraint = self._tag_constraint(queue, cycle_id)
        projection = ["ClusterId", "ProcId", "Out", "Err", "Iwd", "QDate"]
        try:
            ads = self._query(constraint, projection)
            submitted = min((ad["QDate"] for ad in ads if "QDate" in ad), default=None)
            since = f"EnteredCurrentStatus < {submitted or int(time.time()) - self._history_s()}"
            with self._calling("history query"):
                ads += self._schedd().history(constraint, projection, since=since)
        except BackendError as exc:  # schedd stopped or unreachable: the key stays pending, tried again later
            log.warning("%s", exc)
            return None
        pilots = {}
        for ad in ads:
            iwd = Path(ad.get("Iwd", "/"))
            batch_id = f"{ad['ClusterId']}.{ad['ProcId']}"
            key = (ad["ClusterId"], ad["ProcId"])
            pilots[key] = SubmittedPilot(batch_id, iwd / ad["Out"], iwd / ad["Err"], ad["ProcId"])
        return [pilots[key] for key in sorted(pilots)]

    # -- beyond the interface -------------------------------------------------------------------

    def remove_held(self, older_than_s: float, queue: str | None = None) -> list[str]:
        """Remove our pilots held for longer than ``older_than_s``; returns their batch ids."""
        constraint = (
            f"{self._tag_constraint(queue)} && JobStatus == {int(htcondor2.JobStatus.HELD)}"
            f" && time() - EnteredCurrentStatus > {int(older_than_s)}"
        )
        ids = [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in self._query(constraint, ["ClusterId", "ProcId"])]
        if ids:
            reason = f"AutoPilot: held for more than {int(older_than_s)} s"
            with self._calling(f"removal of {len(ids)} held pilots"):
                self._schedd().act(htcondor2.JobAction.Remove, ids, reason=(reason, None))
        return ids

    def submit_description(self, spec: PilotSpec, log_dir: Path) -> dict[str, str]:
        """The submit description of one cycle's pilots (every value as condor_submit reads it)."""
        options = {**self.parameters, **spec.parameters}
        executable, *arguments = spec.command or [""]
        if not executable.startswith("/"):
            # condor_submit does not search PATH: a bare name would be looked for in initialdir.
            found = shutil.which(executable) if executable else None
            if not found:
                raise ValueError(f"pilot command[0] {executable!r} is neither an absolute path nor on PATH")
            executable = found
        description = {
            "universe": "vanilla",
            "executable": executable,
            "arguments": condor_arguments(arguments),
            "initialdir": str(log_dir),
            "output": f"{log_dir}/$(Cluster).$(Process).out",
            "error": f"{log_dir}/$(Cluster).$(Process).err",
            "log": f"{log_dir}/$(Cluster).log",
            "request_cpus": str(spec.corecount),
            f"+{TAG_QUEUE}": classad_string(spec.queue),
            f"+{TAG_CYCLE}": classad_string(spec.cycle_id),
            f"+{TAG_SCHEDULER}": classad_string(spec.scheduler),
        }
        if not arguments:
            del description["arguments"]
        shipping, variables = self._credential_commands(spec, options)
        if spec.memory_mb:
            description["request_memory"] = str(spec.memory_mb)
        description.update(limits(spec.walltime_s, options))
        description.update(self._grid_commands(spec, options))
        if options.get("transfer_executable", True) and is_script(executable):
            description.update(FILE_TRANSFER)  # the wrapper goes with the job: a node need not share our files
        description.update(shipping)
        environment = {**spec.environment, **variables}
        if KEPT_DIR_VARIABLE in environment and transfers_files(description):
            environment[KEPT_DIR_VARIABLE] = KEPT_OUTPUT  # the node need not see the scheduler's kept dir
            description.update(KEPT_TRANSFER)
        # The pilot names itself to the monitor by its batch id; HTCondor expands the macros.
        description["environment"] = condor_environment(
            environment, {PILOT_ID_VARIABLE: "$(Cluster).$(Process)", PILOT_INDEX_VARIABLE: "$(Process)"}
        )
        extra = options.get("submit") or {}
        if not isinstance(extra, Mapping):
            raise ValueError(f"back end {self.name!r}: parameter 'submit' must be a mapping, got {extra!r}")
        description.update({str(k): str(v) for k, v in extra.items()})
        return description

    # -- helpers --------------------------------------------------------------------------------

    def _grid_commands(self, spec: PilotSpec, options: Mapping[str, Any]) -> dict[str, str]:
        """Commands a subclass adds to send the pilots elsewhere; none for the local pool."""
        return {}

    def _credential_commands(
        self, spec: PilotSpec, options: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The submit commands that ship the spec's credential with the job, into its scratch directory where the
        pilot runs (its output still streamed to the log directory), and the pilot's variables for it: a proxy as
        ``x509userproxy`` (HTCondor sets ``X509_USER_PROXY`` to its copy), a token as an input file."""
        credential = spec.credential
        if credential is None:
            return {}, {}
        commands = dict(FILE_TRANSFER)
        if credential.kind == PROXY:
            commands["x509userproxy"] = escape_macros(credential.path)
            return commands, {k: v for k, v in pilot_environment(credential).items() if k != PROXY_VARIABLE}
        if "," in credential.path:
            raise ValueError(f"credential path {credential.path!r} holds a comma, which transfer_input_files splits at")
        commands["transfer_input_files"] = escape_macros(credential.path)
        return commands, pilot_environment(credential, os.path.basename(credential.path))

    def _owner(self) -> str | None:
        owner = self.parameters.get("job_owner")
        if owner:
            return str(owner)
        return None if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _tag_constraint(self, queue: str | None = None, cycle_id: str | None = None) -> str:
        """Our pilots (tagged, and owned by the job owner), of one queue and cycle when given."""
        terms = [f"{TAG_QUEUE} =!= undefined"]
        for attr, value in ((TAG_QUEUE, queue), (TAG_CYCLE, cycle_id)):
            if value is not None:
                terms.append(f"{attr} == {classad_string(value)}")
        owner = self._owner()
        if owner:
            terms.append(f"Owner == {classad_string(owner)}")
        return " && ".join(terms)

    def _ads_by_id(self, batch_ids: Sequence[str], projection: list[str]) -> dict[str, classad.ClassAd]:
        """The job ads of the given pilots, from the queue, then from the history for those gone."""
        wanted = parse_batch_ids(batch_ids)
        if not wanted:
            return {}
        found = {(ad["ClusterId"], ad["ProcId"]): ad for ad in self._query(ids_constraint(wanted), projection)}
        gone = wanted - found.keys()
        if gone:
            since = f"EnteredCurrentStatus < {int(time.time()) - self._history_s()}"
            with self._calling("history query"):
                history = self._schedd().history(ids_constraint(gone), projection, match=len(gone), since=since)
            for ad in history:
                found.setdefault((ad["ClusterId"], ad["ProcId"]), ad)
        return {f"{c}.{p}": ad for (c, p), ad in found.items() if (c, p) in wanted}

    def _history_s(self) -> int:
        return int(self.parameters.get("history_s", DEFAULT_HISTORY_S))

    def _query(self, constraint: str, projection: list[str]) -> list[classad.ClassAd]:
        with self._calling("queue query"):
            return self._schedd().query(constraint, projection)

    def _schedd(self) -> htcondor2.Schedd:
        """The schedd, located through the collector on every call (its address changes on restart)."""
        self._apply_config()
        pool, name = self.parameters.get("pool"), self.parameters.get("schedd")
        with self._calling("schedd lookup"):
            ad = htcondor2.Collector(pool).locate(htcondor2.DaemonType.Schedd, name)
        if ad is None:
            raise BackendError(f"back end {self.name!r}: no schedd named {name!r} in pool {pool or 'default'}")
        return htcondor2.Schedd(ad)

    def _apply_config(self) -> None:
        knobs: dict[str, str] = {}
        config_file = self.parameters.get("config_file")
        if config_file:
            knobs.update(read_condor_env(Path(config_file)))
        knobs.update({str(k): str(v) for k, v in (self.parameters.get("config") or {}).items()})
        if self.parameters.get("token_dir"):
            knobs["SEC_TOKEN_DIRECTORY"] = str(self.parameters["token_dir"])
        for knob, value in knobs.items():
            if htcondor2.param.get(knob) != value:
                htcondor2.param[knob] = value

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except htcondor2.HTCondorException as exc:
            where = f"schedd {self.parameters.get('schedd') or '(default)'} in pool "
            where += str(self.parameters.get("pool") or htcondor2.param.get("CONDOR_HOST", "(default)"))
            raise BackendError(f"back end {self.name!r}: HTCondor {what} failed at {where}: {exc}") from exc

    def _make_log_dir(self, log_dir: Path) -> None:
        """Create the log directory; as root, hand what was created to the job owner, and check that
        the owner can reach and write it (if not, HTCondor keeps the pilots idle for ever, or holds them)."""
        missing = [d for d in (log_dir, *log_dir.parents) if not d.exists()]
        log_dir.mkdir(parents=True, exist_ok=True)
        owner = self.parameters.get("job_owner")
        if os.geteuid() != 0 or not owner:
            return
        try:
            user = pwd.getpwnam(str(owner))
        except KeyError:
            raise BackendError(f"back end {self.name!r}: job_owner {owner!r} is not a user here") from None
        for directory in missing:
            os.chown(directory, user.pw_uid, user.pw_gid)
        for directory, need in ((log_dir, "write"), *((d, "enter") for d in log_dir.parents)):
            if not permits(directory, user, write=need == "write"):
                raise BackendError(
                    f"back end {self.name!r}: job owner {owner!r} cannot {need} {directory} (log dir {log_dir})"
                )


def transfers_files(description: Mapping[str, str]) -> bool:
    """Whether a vanilla-universe job runs in a scratch dir of its own, its files sent and brought back."""
    return description.get("universe") == "vanilla" and description.get("should_transfer_files") == "YES"


def is_script(path: str) -> bool:
    """Whether ``path`` is a script here (``#!``), such as the wrapper, rather than a program nodes have too."""
    try:
        with open(path, "rb") as stream:
            return stream.read(2) == b"#!"
    except OSError:
        return False


def permits(directory: Path, user: pwd.struct_passwd, write: bool) -> bool:
    """Whether ``user`` may enter (and, with ``write``, create files in) ``directory``, by its mode bits."""
    info = directory.stat()
    need = 0o3 if write else 0o1  # write+search, or search
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    if info.st_uid == user.pw_uid:
        return (info.st_mode >> 6) & need == need
    if info.st_gid in groups:
        return (info.st_mode >> 3) & need == need
    return info.st_mode & need == need


class CondorCEBackend(CondorBackend):
    """Pilots sent through the local schedd's grid universe to an HTCondor-CE or an ARC-CE.

    Parameters, besides those of :class:`CondorBackend`: ``ce`` (``host`` or ``host:port`` for an
    HTCondor-CE, where the port defaults to 9619; a host or REST URL for an ARC-CE), ``flavour``
    (``htcondor-ce``, the default, or ``arc``), ``ce_queue`` (the batch queue behind the CE),
    ``x509_proxy`` and ``scitokens_file`` (credentials), ``arc_rte`` (list of ARC runtime environments).
    The remote attributes follow Harvester's CE templates
    (HSF/harvester examples/htcondor_atlas-grid-ce_pull.sdf.d/htcondor-ce.sdf) and the ARC commands
    HTCondor's grid-universe manual (docs/grid-computing/grid-universe.rst).

    Flavour ``arc`` (``grid_resource = arc <REST URL>``): the gridmanager's arc_gahp delegates the proxy to the
    CE, which needs an A-REX whose delegation request OpenSSL >= 3.4 verifies (ARC >= 6.18: 6.17's is a
    version-2 CSR, refused: its delegation fails and the pilots are held, "HTTP response 500"), and environment
    values must not hold ``"``, ``$`` or backquotes (A-REX's job script mangles them). A pilot whose CE the
    gridmanager cannot reach (down, or refusing the proxy) stays queued, and a held one held, each status naming
    the queue and the CE.
    """

    kind = "condor-ce"

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """As for a pool, once the proxy the gridmanager will delegate is there and unexpired."""
        proxy = self._proxy(spec)
        if n > 0 and proxy is not None:
            self._check_proxy(proxy, spec)
        return super().submit(n, spec)

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """As for a pool; a pilot the gridmanager cannot take to its CE, or that the CE refused, says which
        queue and CE, and why."""
        ads = self._ads_by_id(batch_ids, [*_PROJECTION, *_GRID_PROJECTION])
        return {batch_id: grid_pilot_status(ad) for batch_id, ad in ads.items()}

    def _check_proxy(self, proxy: str, spec: PilotSpec) -> None:
        """Refuse a proxy that is missing, unreadable or expired: HTCondor would take the pilots, and only its
        gridmanager would find them unusable."""
        where = self._where(spec.queue, spec.parameters)
        if not os.path.isfile(proxy):
            raise BackendError(f"{where}: proxy {proxy} does not exist")
        try:
            expires_at = proxy_expiry(Path(proxy))
        except CredentialUnusable as exc:
            raise BackendError(f"{where}: {exc}") from None
        if expires_at <= dt.datetime.now(dt.timezone.utc):
            raise BackendError(f"{where}: proxy {proxy} expired at {expires_at:%Y-%m-%d %H:%M:%S} UTC")

    def _proxy(self, spec: PilotSpec) -> str | None:
        """The proxy the pilots are submitted with: the queue's proxy credential, else the back end's."""
        if spec.credential is not None and spec.credential.kind == PROXY:
            return spec.credential.path
        proxy = {**self.parameters, **spec.parameters}.get("x509_proxy")
        return str(proxy) if proxy else None

    def _where(self, queue: str, overrides: Mapping[str, Any]) -> str:
        ce = {**self.parameters, **overrides}.get("ce")
        return f"condor-ce back end {self.name!r} (queue {queue}, CE {ce})"

    def _grid_commands(self, spec: PilotSpec, options: Mapping[str, Any]) -> dict[str, str]:
        ce = options.get("ce")
        if not ce:
            raise ValueError(f"back end {self.name!r}: parameter 'ce' (the CE endpoint) is required")
        flavour = options.get("flavour", "htcondor-ce")
        commands = {"universe": "grid", "transfer_executable": "True"}
        if flavour == "htcondor-ce":
            host, _, port = str(ce).partition(":")
            commands["grid_resource"] = f"condor {host} {host}:{port or 9619}"
            commands.update(htcondor_ce_attributes(spec, options))
        elif flavour == "arc":
            for name, value in spec.environment.items():
                if mangled := sorted(set(str(value)) & set(ARC_MANGLED)):
                    raise ValueError(f"back end {self.name!r}: environment variable {name} holds {' '.join(mangled)}, "
                                     "which A-REX's job script mangles (flavour arc)")
            commands["grid_resource"] = f"arc {ce}"
            commands.update(arc_commands(options))
        else:
            raise ValueError(f"back end {self.name!r}: flavour must be 'htcondor-ce' or 'arc', got {flavour!r}")
        if options.get("x509_proxy"):
            commands["x509userproxy"] = str(options["x509_proxy"])
        if options.get("scitokens_file"):
            commands["scitokens_file"] = str(options["scitokens_file"])
        return commands

    def _credential_commands(
        self, spec: PilotSpec, options: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """As for a pool; a token also authenticates HTCondor to the CE (``scitokens_file``) unless the back end
        names a CE token of its own, and the output comes back when the job ends (a CE streams none)."""
        commands, variables = super()._credential_commands(spec, options)
        commands.pop("stream_output", None)
        commands.pop("stream_error", None)
        if spec.credential is not None and spec.credential.kind == TOKEN and not options.get("scitokens_file"):
            commands["scitokens_file"] = escape_macros(spec.credential.path)
        return commands, variables


#: What A-REX 7's job script does not keep in an environment value HTCondor sends it in ADL (seen here: quotes
#: dropped, ``$name`` and backquotes expanded).
ARC_MANGLED = '"$`'

#: What a grid job's ad tells beyond a pool job's: its CE, since when the gridmanager cannot reach it, the proxy.
_GRID_PROJECTION = [TAG_QUEUE, "GridResource", "GridResourceUnavailableTime", "GridJobStatus", "x509userproxysubject"]


def grid_pilot_status(ad: classad.ClassAd) -> PilotStatus:
    """A grid job's status (see :func:`pilot_status`). An idle job whose CE the gridmanager marked unavailable
    (its ping fails: the CE is down, or its TLS refuses the proxy) and a held job say so, naming the queue and the
    CE; the gridmanager keeps trying the first, so it stays queued."""
    status = pilot_status(ad)
    where = f"queue {ad.get(TAG_QUEUE)}, CE {str(ad.get('GridResource', '')).partition(' ')[2] or '(none)'}"
    if status.state is PilotState.HELD:
        return dataclasses.replace(status, reason=f"{where}: {status.reason}")
    since = epoch(ad.get("GridResourceUnavailableTime"))
    if status.state is PilotState.QUEUED and since is not None:
        reason = (f"{where}: the gridmanager cannot reach the CE since {since:%Y-%m-%d %H:%M:%S} UTC with proxy "
                  f"{ad.get('x509userproxysubject', '(none)')}: the CE is down or does not accept this proxy")
        return dataclasses.replace(status, reason=reason)
    return status


def htcondor_ce_attributes(spec: PilotSpec, options: Mapping[str, Any]) -> dict[str, str]:
    """The routed job's resources, in the attributes HTCondor-CE job routes read."""
    attributes = {"+remote_jobuniverse": "5", "+xcount": str(spec.corecount)}
    if spec.memory_mb:
        attributes["+maxMemory"] = str(spec.memory_mb)
    if spec.walltime_s:
        attributes["+maxWallTime"] = str(math.ceil(spec.walltime_s / 60))
    if options.get("ce_queue"):
        attributes["+remote_queue"] = classad_string(str(options["ce_queue"]))
    return attributes


def arc_commands(options: Mapping[str, Any]) -> dict[str, str]:
    """ARC's ADL extras: the batch queue as a resource element, and runtime environments."""
    commands = {}
    if options.get("ce_queue"):
        commands["arc_resources"] = f"<QueueName>{xml_text(str(options['ce_queue']))}</QueueName>"
    rte = options.get("arc_rte") or []
    if rte:
        commands["arc_rte"] = ",".join(str(r) for r in rte)
    return commands


def limits(walltime_s: int | None, options: Mapping[str, Any]) -> dict[str, str]:
    """``periodic_hold`` past the walltime, ``periodic_remove`` when idle or held too long."""
    commands = {}
    if walltime_s:
        commands["periodic_hold"] = f"JobStatus == 2 && time() - EnteredCurrentStatus > {int(walltime_s)}"
        commands["periodic_hold_reason"] = classad_string(f"AutoPilot: ran longer than {int(walltime_s)} s")
    removals = []
    max_idle_s = options.get("max_idle_s", DEFAULT_MAX_IDLE_S)
    if max_idle_s:
        removals.append(f"(JobStatus == 1 && time() - EnteredCurrentStatus > {int(max_idle_s)})")
    max_held_s = options.get("max_held_s", DEFAULT_MAX_HELD_S)
    if max_held_s:
        removals.append(f"(JobStatus == 5 && time() - EnteredCurrentStatus > {int(max_held_s)})")
    if removals:
        commands["periodic_remove"] = " || ".join(removals)
    return commands


def pilot_status(ad: classad.ClassAd) -> PilotStatus:
    """Map a job ad to a pilot status: held stays apart from idle, completion splits on the exit."""
    code = ad.get("JobStatus")
    started = epoch(ad.get("JobCurrentStartDate") or ad.get("JobStartDate"))
    entered = epoch(ad.get("EnteredCurrentStatus"))
    if code == htcondor2.JobStatus.IDLE:
        return PilotStatus(PilotState.QUEUED)
    if code in (htcondor2.JobStatus.RUNNING, htcondor2.JobStatus.TRANSFERRING_OUTPUT):
        return PilotStatus(PilotState.RUNNING, started_at=started)
    if code == htcondor2.JobStatus.SUSPENDED:
        return PilotStatus(PilotState.QUEUED, reason="suspended by the execute node", started_at=started)
    if code == htcondor2.JobStatus.HELD:
        return PilotStatus(PilotState.HELD, reason=ad.get("HoldReason"), started_at=started)
    if code == htcondor2.JobStatus.REMOVED:
        return PilotStatus(PilotState.CANCELLED, reason=ad.get("RemoveReason"), started_at=started, ended_at=entered)
    if code == htcondor2.JobStatus.COMPLETED:
        ended = epoch(ad.get("CompletionDate")) or entered
        if ad.get("ExitBySignal"):
            reason = f"killed by signal {ad.get('ExitSignal')}"
            return PilotStatus(PilotState.FAILED, reason=reason, started_at=started, ended_at=ended)
        exit_code = ad.get("ExitCode")
        state = PilotState.FINISHED if exit_code == 0 else PilotState.FAILED
        reason = None if exit_code == 0 else f"exit code {exit_code}"
        return PilotStatus(state, exit_code=exit_code, reason=reason, started_at=started, ended_at=ended)
    raise BackendError(f"job {ad.get('ClusterId')}.{ad.get('ProcId')} has an unknown JobStatus {code!r}")


def parse_batch_ids(batch_ids: Sequence[str]) -> set[tuple[int, int]]:
    """``(cluster, proc)`` of each ``<cluster>.<proc>`` id; other ids cannot be HTCondor's and are left out."""
    matches = (_BATCH_ID.match(b) for b in batch_ids)
    return {(int(m[1]), int(m[2])) for m in matches if m}


def ids_constraint(ids: set[tuple[int, int]]) -> str:
    """A constraint matching exactly these jobs, with runs of consecutive procs as ranges."""
    by_cluster: dict[int, list[int]] = {}
    for cluster, proc in ids:
        by_cluster.setdefault(cluster, []).append(proc)
    clauses = []
    for cluster, procs in sorted(by_cluster.items()):
        ranges = []
        for low, high in runs(sorted(procs)):
            ranges.append(f"ProcId == {low}" if low == high else f"(ProcId >= {low} && ProcId <= {high})")
        clauses.append(f"(ClusterId == {cluster} && ({' || '.join(ranges)}))")
    return " || ".join(clauses)


def runs(numbers: list[int]) -> list[tuple[int, int]]:
    """``[0, 1, 2, 5, 7, 8]`` -> ``[(0, 2), (5, 5), (7, 8)]`` (input sorted)."""
    result: list[tuple[int, int]] = []
    for number in numbers:
        if result and number == result[-1][1] + 1:
            result[-1] = (result[-1][0], number)
        else:
            result.append((number, number))
    return result


def read_condor_env(path: Path) -> dict[str, str]:
    """HTCondor config knobs from ``_CONDOR_<KNOB>=value`` lines; other lines and comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackendError(f"cannot read the HTCondor client settings {path}: {exc.strerror}") from exc
    knobs = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line.startswith("_CONDOR_"):
            continue
        name, sep, value = line.partition("=")
        if not sep or name == "_CONDOR_":
            raise BackendError(f"{path} line {number}: expected _CONDOR_<KNOB>=value, got {line!r}")
        knobs[name.removeprefix("_CONDOR_")] = value
    return knobs


def condor_arguments(arguments: Sequence[str]) -> str:
    """Arguments in condor_submit's quoted syntax: each one in single quotes, quotes doubled."""
    return '"' + " ".join(_quote_word(a, "argument") for a in arguments) + '"'


def condor_environment(environment: Mapping[str, str], macros: Mapping[str, str] | None = None) -> str:
    """An environment in condor_submit's quoted syntax (``"NAME='value' ..."``); values in ``macros`` keep
    their ``$(...)`` macros for HTCondor to expand."""
    words = [f"{name}='{value}'" for name, value in (macros or {}).items()]
    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"pilot environment: {name!r} is not a valid variable name")
        words.append(f"{name}={_quote_word(value, f'environment value of {name}')}")
    return '"' + " ".join(words) + '"'


def _quote_word(word: str, what: str) -> str:
    if "\n" in word or "\r" in word:
        raise ValueError(f"pilot {what} {word!r} contains a line break, which HTCondor cannot pass")
    quoted = escape_macros(word).replace('"', '""').replace("'", "''")
    return f"'{quoted}'"


def escape_macros(text: str) -> str:
    """Keep ``$(`` literal: condor_submit would otherwise expand it as a macro."""
    return text.replace("$(", "$(DOLLAR)(")


def classad_string(text: str) -> str:
    """A ClassAd string literal, safe from submit-macro expansion."""
    return escape_macros(classad.quote(text))


def xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def epoch(seconds: Any) -> dt.datetime | None:
    """An ad's time in seconds since the epoch; ``None`` for a value that is no time, such as ``Undefined``
    (htcondor2's ``classad.Value`` is an ``IntEnum``: ``Undefined`` would read as 2 s)."""
    if not isinstance(seconds, int) or isinstance(seconds, (bool, classad.Value)) or seconds <= 0:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
