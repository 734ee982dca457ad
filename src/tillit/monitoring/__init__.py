"""Monitoring: analytics over the books (DuckDB), channel health, alert rules and alerts, metrics and logs.

Sits above reconciliation (it reads every area's tables, writes only its own) and below the worker,
which runs its due ``evaluate_alerts`` job. See docs/monitoring.md.
"""
