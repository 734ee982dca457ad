"""Fault-injecting WeChat Pay and Alipay emulator (`tillit sandbox`).

Public entry points: :func:`tillit.sandbox.app.create_app`, :func:`tillit.sandbox.config.load_config`,
:class:`tillit.sandbox.clock.SandboxClock`, and the Typer app :data:`tillit.sandbox.cli.app`.
"""
