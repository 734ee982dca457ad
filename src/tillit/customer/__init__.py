"""Customer-facing pages reached without login through signed links: the e-receipt (receipt.py) and
the order page (fulfilment). Entry points: thin, they read through the areas' use cases."""
