"""The merchants area: lifecycle, qualification documents, review, blacklist, limits, provider onboarding.

Sits between ``exceptions`` (it opens cases) and ``payments`` (which asks it whether a merchant may take
a provider payment and reserves the merchant's limits before any provider call). See docs/merchants.md.
"""
