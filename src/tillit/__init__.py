"""Tillit: a point of sale that never loses, leaves unknown or double-charges a sale."""

__version__ = "0.1.0"
