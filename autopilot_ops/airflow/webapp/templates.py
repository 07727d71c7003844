"""The monitor's HTML templates (Jinja2, autoescaped), kept in code so they ship with the package."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}AutoPilot{% endblock %}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; font-size: 0.9em; }
th { background: #f1f3f5; }
.num { text-align: right; }
.trace { margin: 0; padding-left: 1.2em; font-family: monospace; font-size: 0.85em; }
.muted { color: #868e96; }
.status-offline, .status-brokeroff { color: #c92a2a; }
.status-test { color: #d9822b; }
nav a { margin-right: 1em; }
.control { margin: 0.5em 0 1em; }
.control-state { font-weight: bold; }
.control-state[data-paused="true"], .control-state[data-draining="true"] { color: #c92a2a; }
.control-actions button, .control-actions input { margin-left: 0.4em; }
.control-error { color: #c92a2a; margin-left: 0.5em; }
</style>
{% if can_act %}<script>
// A control button sends its request to the control API as JSON (the only kind of write the session cookie
// may authorise, see auth.py), then reloads the page so that it shows the control now in force.
document.addEventListener("click", async (event) => {
  const button = event.target.closest(".control-actions button");
  if (!button) return;
  const panel = button.closest(".control-actions");
  const error = panel.querySelector(".control-error");
  const init = {method: button.dataset.method, credentials: "same-origin",
                headers: {"Content-Type": "application/json", "Accept": "application/json"}};
  if (button.dataset.body) {
    const body = JSON.parse(button.dataset.body);
    const reason = panel.querySelector(".control-reason").value.trim();
    if (reason) body.reason = reason;
    init.body = JSON.stringify(body);
  }
  const buttons = panel.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  error.textContent = "";
  try {
    const reply = await fetch(panel.dataset.url, init);
    if (reply.ok) { window.location.reload(); return; }
    const detail = (await reply.json().catch(() => ({}))).detail;
    error.textContent = `${button.textContent} refused (HTTP ${reply.status}): ${
      typeof detail === "string" ? detail : JSON.stringify(detail ?? reply.statusText)}`;
  } catch (exc) {
    error.textContent = `${button.textContent} failed: ${exc}`;
  }
  buttons.forEach((b) => { b.disabled = false; });
});
</script>{% endif %}
</head>
<body><nav><a href="{{ url('overview') }}">AutoPilot overview</a><a href="/" target="_top">Airflow</a>
<span class="muted">signed in as {{ identity.name }} ({{ identity.role.label }})</span></nav>
{% block body %}{% endblock %}</body></html>
"""

_CONTROLS = """{% macro control_panel(panel) -%}
<div class="control" id="control-{{ panel.scope }}-{{ panel.target }}">{{ panel.scope }} {{ panel.target }}:
<span class="control-state" data-paused="{{ panel.paused | lower }}" data-draining="{{ panel.draining | lower }}">
{{- panel.state }}</span>
{% if panel.control %}{% set c = panel.control %}<span class="muted">(control set by {{ c.set_by }} at
{{ when(c.set_at) }}{% if c.reason %}: {{ c.reason }}{% endif %}
{%- if c.expired %}; expired {{ when(c.expires_at) }}{% elif c.expires_at %}; until {{ when(c.expires_at) }}
{%- endif %})</span>{% endif %}
{% if can_act %}<span class="control-actions" data-url="{{ url('api_controls') }}/{{ panel.scope }}/
{{- panel.target | urlencode }}"><input class="control-reason" maxlength="500" placeholder="reason (optional)"
 aria-label="reason for the change of {{ panel.scope }} {{ panel.target }}">
{% for action in panel.actions %}<button type="button" data-method="{{ action.method }}"
{%- if action.body is not none %} data-body='{{ action.body | tojson }}'{% endif %}>{{ action.label }}</button>
{% endfor %}<span class="control-error" role="alert"></span></span>
{% else %}<span class="muted">(changing it needs the op or admin role)</span>{% endif %}
</div>
{%- endmacro %}
"""

_OVERVIEW = """{% extends "base.html" %}
{% from "controls.html" import control_panel with context %}
{% block body %}
<h1>AutoPilot schedulers{% if only_tag %}: {{ only_tag }}{% endif %}</h1>
{% if only_tag %}<p><a href="{{ url('overview') }}">all tags</a></p>{% endif %}
{% if not tags %}<p>No queues{% if only_tag %} with scheduler tag {{ only_tag }}{% endif %} in schedconfig.</p>
{% endif %}
{% for tag, queues in tags.items() %}
<h2 id="tag-{{ tag }}"><a href="{{ url('overview') }}?tag={{ tag | urlencode }}">{{ tag }}</a>
<span class="muted">(DAG {{ dag_id(tag) }}, {{ queues | length }} queues)</span></h2>
{% if tag in panels %}{{ control_panel(panels[tag]) }}
{% else %}<p class="muted">These queues have no tag: pause or drain them on their queue pages.</p>{% endif %}
<table><tr><th>queue</th><th>status</th><th>back end</th>
{% for state in states %}<th>{{ state }}</th>{% endfor %}
<th>activated</th><th>last cycle</th><th>decided / submitted</th><th>reason</th></tr>
{% for q in queues %}<tr>
<td><a href="{{ url('queue_page', queue=q.queue) }}">{{ q.queue }}</a></td>
<td class="status-{{ q.status }}">{{ q.status }}</td><td>{{ q.backend or "-" }}</td>
{% for state in states %}<td class="num">{{ q.pilots.get(state, 0) }}</td>{% endfor %}
<td class="num">{{ q.activated if q.activated is not none else "-" }}</td>
<td>{{ when(q.last_cycle_at) }}</td>
<td class="num">{% if q.last_cycle_at %}{{ q.last_decided }} / {{ q.last_submitted }}{% else %}-{% endif %}</td>
<td>{% if q.last_reason %}<details><summary>{{ q.last_reason[-1] }}</summary><ol class="trace">
{% for line in q.last_reason %}<li>{{ line }}</li>{% endfor %}</ol></details>{% else %}-{% endif %}</td>
</tr>{% endfor %}</table>
{% endfor %}
{% endblock %}
"""

_QUEUE = """{% extends "base.html" %}
{% from "controls.html" import control_panel with context %}
{% block title %}AutoPilot: {{ queue.queue }}{% endblock %}
{% block body %}
<h1>{{ queue.queue }}</h1>
<p>site {{ queue.site }} · tags {{ queue.tags | join(", ") or "-" }} · status
<span class="status-{{ queue.status }}">{{ queue.status }}</span> · back end {{ queue.backend or "-" }} ·
scheduler <a href="{{ url('overview') }}?tag={{ queue.scheduler_tag | urlencode }}">{{ queue.scheduler_tag }}</a>
(DAG {{ dag_id(queue.scheduler_tag) }}) · cycle every {{ queue.cycle_period }} s</p>

<h2>Controls</h2>
{{ control_panel(panel) }}
{% if stopping %}<p class="control-stopping">No pilot is submitted:
{% for c in stopping %}{{ c.scope }} {{ c.target }} {% if c.paused %}paused{% endif %}
{%- if c.paused and c.drain %} and {% endif %}{% if c.drain %}draining{% endif %}
{%- if c.reason %} ({{ c.reason }}){% endif %}{{ "; " if not loop.last }}{% endfor %}.</p>{% endif %}
{% if controls %}<table><tr><th>scope</th><th>target</th><th>paused</th><th>drain</th><th>fixed number</th>
<th>max per cycle</th><th>expires</th><th>set by</th><th>reason</th></tr>
{% for c in controls %}<tr{% if c.expired %} class="muted"{% endif %}><td>{{ c.scope }}</td><td>{{ c.target }}</td>
<td>{{ c.paused }}</td><td>{{ c.drain }}</td>
<td class="num">{{ c.fixed_number if c.fixed_number is not none else "-" }}</td>
<td class="num">{{ c.max_per_cycle if c.max_per_cycle is not none else "-" }}</td>
<td>{{ when(c.expires_at) }}{% if c.expired %} (expired){% endif %}</td><td>{{ c.set_by }} at {{ when(c.set_at) }}</td>
<td>{{ c.reason or "" }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">None.</p>{% endif %}

<h2>Queued, running and activated</h2>
{% if chart.start %}
<svg width="{{ chart.width }}" height="{{ chart.height }}" role="img"
 aria-label="queued, running and activated over time">
<rect x="0" y="0" width="{{ chart.width }}" height="{{ chart.height }}" fill="#fff" stroke="#ccc"/>
<text x="4" y="{{ chart.margin - 8 }}" font-size="11">max {{ chart.y_max }}</text>
<text x="4" y="{{ chart.height - 8 }}" font-size="11">{{ when(chart.start) }}</text>
<text x="{{ chart.width - 4 }}" y="{{ chart.height - 8 }}" font-size="11" text-anchor="end">{{ when(chart.end) }}</text>
{% for line in chart.lines %}
<polyline fill="none" stroke="{{ line.colour }}" stroke-width="2" points="{{ line.points }}"/>
{% endfor %}</svg>
<p>{% for line in chart.lines %}<span style="color: {{ line.colour }}">&#9632; {{ line.name }}
{{ line.last if line.last is not none else "-" }}</span> {% endfor %}</p>
{% else %}<p class="muted">No cycles yet.</p>{% endif %}

<h2>Recent cycles</h2>
<table><tr><th>started</th><th>scheduler</th><th>decided</th><th>submitted</th><th>failed</th><th>reason</th></tr>
{% for c in cycles %}<tr><td>{{ when(c.started_at) }}</td><td>{{ c.scheduler or "-" }}</td>
<td class="num">{{ c.decided }}</td><td class="num">{{ c.submitted }}</td><td class="num">{{ c.failed }}</td>
<td><ol class="trace">{% for line in c.reason %}<li>{{ line }}</li>{% endfor %}</ol></td></tr>
{% else %}<tr><td colspan="6" class="muted">none</td></tr>{% endfor %}</table>

<h2>Recent pilots</h2>
<table><tr><th>id</th><th>batch id</th><th>state</th><th>submitted</th><th>changed</th><th>exit</th>
<th>heartbeat</th><th>PanDA ids</th><th>logs</th></tr>
{% for p in pilots %}<tr><td>{{ p.id }}</td><td>{{ p.batch_id }}</td>
<td>{{ p.state }}{% if p.state_reason %} <span class="muted">({{ p.state_reason }})</span>{% endif %}</td>
<td>{{ when(p.submitted_at) }}</td><td>{{ when(p.state_changed_at) }}</td>
<td class="num">{{ p.exit_code if p.exit_code is not none else "-" }}</td><td>{{ when(p.last_heartbeat) }}</td>
<td>{{ p.panda_ids | join(", ") or "-" }}</td>
<td>{% for name, rel in p.log_links %}<a href="{{ url('log_file', path=rel) }}">{{ name }}</a> {% endfor %}
{% if p.external_log %}<a href="{{ p.external_log }}" rel="noreferrer">log</a>{% endif %}</td></tr>
{% else %}<tr><td colspan="9" class="muted">none</td></tr>{% endfor %}</table>

<h2>Recent events</h2>
<table><tr><th>at</th><th>who</th><th>what</th><th>pilot</th><th>details</th></tr>
{% for e in events %}<tr><td>{{ when(e.at) }}</td><td>{{ e.who }}</td><td>{{ e.what }}</td>
<td>{{ e.pilot_id or "-" }}</td><td><code>{{ e.details | tojson }}</code></td></tr>
{% else %}<tr><td colspan="5" class="muted">none</td></tr>{% endfor %}</table>
{% endblock %}
"""


def when(value: dt.datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {"base.html": _BASE, "controls.html": _CONTROLS, "overview.html": _OVERVIEW, "queue.html": _QUEUE}
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["when"] = when
    return env


def render(env: jinja2.Environment, name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)
