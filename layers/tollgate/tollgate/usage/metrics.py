"""Request metrics (S9): CloudWatch embedded metric format (EMF) through Powertools Metrics.

Every logged request emits, once its log entry is committed (``DynamoUsageLog(on_logged=...)``,
wired in ``tollgate.services.usage_log``): ``Requests``, ``CacheHits``, ``Refusals``,
``ProviderErrors``, ``Failures``, ``ProviderCostMicroUSD``, ``CreditUnitsCharged``, ``Tokens``
and, for successes, ``LatencyMs``. They go out when the handler ends (``@metrics.log_metrics``
on every function that serves requests). Namespace: ``POWERTOOLS_METRICS_NAMESPACE``.

Dimensions stay few: ``service`` (Powertools adds it) and ``feature`` (a feature of
``data/features.toml``, else ``other``: feature names come from clients, and every distinct
value would be a new, billed, CloudWatch metric). Never the org or the user: those are in
the usage analytics.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tollgate.usage.figures import Outcome, outcome_of
from tollgate.usage.log import UsageLogEntry

metrics = Metrics()
"""The process's metrics (Powertools shares their state between instances)."""

# A request refused before it was logged (a malformed body, a bad route) has no metrics: that
# is expected, not worth a warning on every such invocation.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

OTHER_FEATURE = "other"


class RequestMetrics:
    """Turns usage log entries into request metrics."""

    def __init__(self, sink: Metrics, known_features: Iterable[str]) -> None:
        self._sink = sink
        self._known = frozenset(known_features)

    def feature_dimension(self, feature: str) -> str:
        return feature if feature in self._known else OTHER_FEATURE

    def record(self, entry: UsageLogEntry) -> None:
        """Add one request's metrics. Requests of another feature than those pending (a batch
        worker's mixed batch) flush the pending ones first: one EMF blob has one dimension set."""
        feature = self.feature_dimension(entry.feature)
        pending = self._sink.dimension_set.get("feature")
        if pending is not None and pending != feature:
            self._sink.flush_metrics()
            self._sink.clear_metrics()  # flush keeps them when metrics are disabled (tests)
        if self._sink.dimension_set.get("feature") is None:
            self._sink.add_dimension("feature", feature)
        outcome = outcome_of(entry)
        success = outcome is Outcome.SUCCESS
        add = self._sink.add_metric
        add(name="Requests", unit=MetricUnit.Count, value=1)
        add(name="CacheHits", unit=MetricUnit.Count, value=int(success and entry.cache_hit))
        add(name="Refusals", unit=MetricUnit.Count, value=int(outcome is Outcome.REFUSED))
        add(name="ProviderErrors", unit=MetricUnit.Count, value=int(outcome is Outcome.PROVIDER_ERROR))
        add(name="Failures", unit=MetricUnit.Count, value=int(not success))
        add(name="ProviderCostMicroUSD", unit=MetricUnit.Count, value=entry.cost_micro_usd)
        add(name="CreditUnitsCharged", unit=MetricUnit.Count, value=entry.credits)
        add(name="Tokens", unit=MetricUnit.Count, value=entry.input_tokens + entry.output_tokens)
        if success:
            add(name="LatencyMs", unit=MetricUnit.Milliseconds, value=entry.latency_ms)


__all__ = ["OTHER_FEATURE", "RequestMetrics", "metrics"]
