"""Metering: limits and quotas, pricing, and the credit ledger (no AWS inside).

- ``tollgate.metering.service.MeteringService``: the API every feature charges through.
- ``tollgate.metering.models``: the values it takes and returns.
- ``tollgate.metering.pricing``: price table and feature pricing rules.
"""
