"""The customer's pages: no login, reached by a signed link per order (an entry point beside api/)."""
