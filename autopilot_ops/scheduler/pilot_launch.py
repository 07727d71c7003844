"""How a pilot reaches a bare batch node: the wrapper, which fetches the queue's pinned pilot bundle from the
plugin (``GET /autopilot/pilot/<version>.pyz``) and refuses it unless its sha256 is the one given here.

The pilot command may use, besides ``{queue}``, ``{site}``, ``{panda_url}`` and ``{label}``:

- ``{wrapper}``: the wrapper script on this host; the back ends send it with the job (HTCondor transfers the
  executable, the Slurm batch script carries it, the ARC back end uploads it);
- ``{pilot_version}``: the queue's ``pilot_version`` with ``current`` resolved (e.g. ``0.1.0``);
- ``{bundle_url}`` and ``{bundle_sha256}``: where the wrapper fetches that version, and its sum, read from this
  installation's bundle directory (``current`` is built there if missing; the build is reproducible, so it is
  the sum the plugin serves).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.pilot.shelf import BundleShelf

#: The wrapper, as the package installs it.
WRAPPER = Path(__file__).resolve().parents[1] / "pilot" / "autopilot-wrapper.sh"
#: The default pilot command: the wrapper with the queue's bundle, then the options of ``autopilot pilot run``
#: (the wrapper runs the bundle's ``run`` with them).
WRAPPER_COMMAND = (
    "{wrapper} --pilot-url {bundle_url} --pilot-sha256 {bundle_sha256} -- "
    "--queue {queue} --server {panda_url} --prod-source-label {label}"
)
#: The placeholders this module fills in.
BUNDLE_FIELDS = frozenset({"wrapper", "pilot_version", "bundle_url", "bundle_sha256"})


@dataclass(frozen=True)
class PilotBundles:
    """This installation's bundles (``shelf``) and the URL batch nodes fetch them from (``url_template``, with
    ``{version}``: e.g. ``https://airflow.example.org/autopilot/pilot/{version}.pyz``)."""

    shelf: BundleShelf
    url_template: str

    def fields(self, pin: str) -> dict[str, str]:
        """The placeholders for a queue pinned to ``pin`` (``BundleNotFound`` if this host has no such bundle)."""
        bundle = self.shelf.get(pin)
        return {
            "wrapper": str(WRAPPER),
            "pilot_version": bundle.version,
            "bundle_url": self.url_template.format(version=bundle.version),
            "bundle_sha256": bundle.sha256,
        }


def placeholders(command: Sequence[str]) -> set[str]:
    """The ``{names}`` the command's items use."""
    return {name for part in command for _, name, _, _ in string.Formatter().parse(part) if name}


def bundle_url_template(base_url: str) -> str:
    """The plugin's bundle URL under an API server's base URL (Airflow's ``[api] base_url``)."""
    return f"{base_url.rstrip('/')}/autopilot/pilot/{{version}}.pyz"
