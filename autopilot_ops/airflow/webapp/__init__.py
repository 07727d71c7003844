"""The monitor and control web app (FastAPI), mounted by ``plugins/autopilot_plugin.py`` at ``/autopilot``.

Pages (HTML, any role): ``/`` (every scheduler tag and queue; ``?tag=`` for one), ``/queues/{queue}``, and
``/logs/{path}`` (files under ``[autopilot] log_root`` only).

API (JSON): ``GET /api/queues`` (any role); ``GET /api/controls``, ``GET /api/controls/{queue|tag}/{target}``
(any role); ``POST`` and ``DELETE /api/controls/{queue|tag}/{target}`` and ``POST
/api/queues/{queue}/kill-pilots`` (op, admin); ``POST /api/pilot-events`` (pilot, op, admin). OpenAPI at
``/api/docs``. Who is who: see :mod:`~autopilot_ops.airflow.webapp.auth`; what the control rows and kill
requests mean to the scheduler: :mod:`autopilot_ops.store.controls`.
"""
