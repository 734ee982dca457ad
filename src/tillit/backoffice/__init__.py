"""The back office: server-rendered pages (Jinja2 + htmx) for shop managers and operators.

An entry point beside ``api/``: the API app mounts it at ``/backoffice``. Sign-in turns an API key into a
server-side session (sessions.py); every page is registered in registry.py with its nav entry and roles
(docs/backoffice.md says how to add one).
"""
