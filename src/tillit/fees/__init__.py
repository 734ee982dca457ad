"""Fee contracts: the rate, cap, settlement cycle and registered identity a merchant signed per provider
and card kind, with effective dates. Below reconciliation (which checks every bill row against the
contract) and settlement (which computes what each day should bring); see docs/architecture.md."""
