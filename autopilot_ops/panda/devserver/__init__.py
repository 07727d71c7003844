"""``autopilot panda-devserver``: a small PanDA server, wire-compatible with PanDA server 1.0.x for the parts
pilots and pilot schedulers use. ``server.PandaDevServer`` runs it; ``testing.DevServer`` runs it in tests.

Modules: ``api`` (the ``/api/v1`` methods), ``calls`` (parameter checks), ``routes`` (HTTP routing), ``asgi``
(the ASGI application), ``serving`` (uvicorn, which serves it), ``legacy`` (the pre-1.0 methods),
``jobstore``/``database`` (storage), ``jobspec``/``jobdict`` (job formats), ``adder`` (the ``job_output_report``
rule), ``watcher`` (lost heartbeats), ``auth`` (auth modes); for pilot factories: ``harvester_api`` (the
``/api/v1/harvester`` methods), ``factory_store``/``command_store``/``schedconfig`` (their storage, values
checked by ``columns``), ``pilot_streaming`` (the unified pilot-streaming step).
"""
