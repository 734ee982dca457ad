"""Notifications: the durable outbox (rows written in the caller's transaction, sent by the resolver
with retries, backoff and a dead-letter state), recipients' consent, and a customer's contact on an
order. Any higher area writes to it with ``outbox.enqueue``; see docs/notifications.md."""
