"""Fulfilment: orders not handed over at the counter (pickup, delivery) from payment to confirmed receipt.

The lifecycle is data (domain/fulfilment.py); ``service`` holds the moves, ``timers`` the resolver job
(shipping SLA, reminder, auto-confirm), ``links`` the customer's signed link, ``notify`` the protocol the
notifications outbox plugs into. Sits above payments: a dispute can end in a refund through the engine.
See docs/fulfilment.md.
"""
