"""The generic PanDA pilot: nothing VO-specific; runs PanDA jobs on a grid site, a batch queue or a laptop.

Modules: ``loop`` (the pilot: acquire, run, repeat within the time floor; exit codes; signals), ``jobrun`` (one
job from its dict to its final update), ``job`` (the typed job), ``payload`` (the payload process), ``guard``
(kills the payloads if the pilot dies), ``procfs`` (their memory, from /proc),
``staging``/``transformation``/``checksums`` (files), ``reporting``/``outbox`` (updates, kept until delivered),
``events`` (monitor events), ``errorcodes`` (pilot3's codes), ``config``, ``status`` (interactive status line);
plugins in ``movers`` (``autopilot.datamovers``) and ``vo`` (``autopilot.vo``), found by ``plugins``;
``autopilot-wrapper.sh`` is what batch systems run. ``python -m autopilot_ops.pilot run ...`` starts it without
the rest of the CLI.

The pilot needs only Python's standard library (its HTTP is ``autopilot_ops.netutil``), so ``bundle`` can make it
one zipapp, ``autopilot-pilot-<version>.pyz``, that a bare worker node runs with ``python3 -I -S``.
"""
