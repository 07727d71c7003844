"""``airflow.cfg.example`` names only settings Airflow 3.3 knows, and every ``[autopilot]`` key the code reads."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import airflow
import yaml

from autopilot_ops.airflow.webapp.settings import WebSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "airflow.cfg.example"
#: Keys read by autopilot_ops.airflow.config.SchedulerConfig and autopilot_ops.airflow.webapp.settings.
AUTOPILOT_KEYS = {
    "postgres_conn_id", "dsn", "log_root", "snapshot_path", "panda_conn_id", "pilot_command", "global_cap",
    "api_tokens_variable", "api_tokens_conn_id", "api_token_cache_seconds", "deployment_id", "pilot_bundle_dir",
    "pilot_bundle_url", "busy_queue_wait",
    "panda_monitor_url",
}


def _example_keys() -> dict[str, set[str]]:
    """Section -> keys, set or shown commented out (``# key =``)."""
    keys: dict[str, set[str]] = {}
    section = None
    for line in EXAMPLE.read_text().splitlines():
        if match := re.match(r"^\[(\w+)\]$", line):
            section = match[1]
            keys[section] = set()
        elif section and (match := re.match(r"^#? ?(\w+) =", line)):
            keys[section].add(match[1])
    return keys


def test_every_airflow_setting_in_the_example_exists_in_airflow():
    template = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(EXAMPLE)
    assert parser.get("core", "executor") == "LocalExecutor"
    assert parser.getboolean("core", "load_examples") is False
    for section, keys in _example_keys().items():
        if section == "autopilot":
            continue
        unknown = keys - set(template[section]["options"])
        assert not unknown, f"[{section}] {unknown} are not Airflow 3.3 settings"


def test_the_autopilot_section_lists_every_key_the_code_reads():
    assert _example_keys()["autopilot"] == AUTOPILOT_KEYS


def test_web_settings_come_from_the_autopilot_section(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOPILOT_DSN", raising=False)
    monkeypatch.delenv("AUTOPILOT_LOG_ROOT", raising=False)
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__POSTGRES_CONN_ID", "db_conn")
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__LOG_ROOT", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__API_TOKENS_CONN_ID", "api_conn")
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__API_TOKEN_CACHE_SECONDS", "5")
    settings = WebSettings.from_airflow_conf()
    assert (settings.postgres_conn_id, settings.log_root, settings.tokens_variable, settings.tokens_conn_id,
            settings.token_cache_seconds) == ("db_conn", tmp_path, "autopilot_api_tokens", "api_conn", 5.0)
    monkeypatch.setenv("AUTOPILOT_LOG_ROOT", "/elsewhere")
    assert WebSettings.from_airflow_conf().log_root == Path("/elsewhere")
