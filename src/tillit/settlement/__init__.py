"""Settlement: what each merchant-day should bring (captures - refunds - fees, by the contract's cycle),
the providers' fund-flow / account statements and bank statements as imported, the matching of the two
(settled, short, late, missing, duplicate, with age and next action), the daily job and the merchant's
statement. Above reconciliation; reads contracts from ``fees/``. See docs/settlement.md."""
