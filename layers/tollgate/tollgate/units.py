"""The units money is counted in (S4): integers only, never floats.

- credits in units of 1/10,000 credit: ``CREDIT_UNITS`` units make one credit;
- provider cost in micro-USD: ``MICRO_USD`` make one US dollar;
- markups in basis points: ``BASIS_POINTS`` make x 1.

The API shows both as exact JSON numbers with at most 4 and 6 decimals
(``tollgate.credits.amounts``).
"""

CREDIT_UNITS = 10_000  # units per credit: 1 credit = 10,000 units
MICRO_USD = 1_000_000  # micro-USD per USD
BASIS_POINTS = 10_000  # multipliers in 1/10,000: markup_bp = 15_000 means x 1.5
