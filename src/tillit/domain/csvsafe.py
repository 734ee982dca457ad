"""CSV/formula-injection neutralisation for every CSV Tillit writes (OWASP rule).

Contract: ``safe_cell(value)`` returns the text to put in a CSV cell. ``None`` becomes ``""``.
Integers (and bools) we produced are written as their plain decimal form, so a negative amount
such as ``-1250`` stays a number a spreadsheet can sum. Every other value is turned into text and,
when that text starts with ``= + - @``, a tab or a carriage return, it is prefixed with a single
quote ``'`` so a spreadsheet shows it as text instead of evaluating it. A *string* that merely
looks like a negative number (``"-12.50"``) came from outside and is prefixed like any other:
only values whose Python type is a number we emit are trusted.
"""

from __future__ import annotations

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The CSV-safe text of ``value`` (see the module docstring for the rule)."""
    if value is None:
        return ""
    if isinstance(value, int):  # our own integer minor units / counts: a number, never a formula
        return str(int(value))
    text = str(value)
    if text.startswith(DANGEROUS_PREFIXES):
        return "'" + text
    return text
