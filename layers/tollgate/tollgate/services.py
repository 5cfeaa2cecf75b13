"""The composition root: domain services wired to their AWS adapters, built once per
process from the settings. Handlers ask here; the domain never does.

Each builder imports what it wires when first called, not at import time: every function
imports this module, and a cold start should only load the domains that function uses (the
authorizer needs identity, not providers or metering).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

from tollgate.settings import get_settings

if TYPE_CHECKING:
    from tollgate.aws.assets import S3AssetStore
    from tollgate.aws.dynamodb import DynamoTable
    from tollgate.aws.idempotency_store import DynamoIdempotencyStore
    from tollgate.aws.identity_store import DynamoIdentityStore
    from tollgate.aws.image_store import DynamoImageJobStore
    from tollgate.aws.secrets import ParameterSecrets
    from tollgate.aws.usage_store import DynamoUsageLog
    from tollgate.conversations.service import ConversationService
    from tollgate.credits.alerts import AlertPublisher
    from tollgate.credits.scheduled import ScheduledWork
    from tollgate.generation.service import GenerationService
    from tollgate.identity.ports import IdentityStore
    from tollgate.identity.service import IdentityService
    from tollgate.images.service import ImageService
    from tollgate.images.worker import ImageWorker
    from tollgate.metering.service import MeteringService
    from tollgate.providers.catalog import ProviderCatalog
    from tollgate.templates.binding import TemplateBinder
    from tollgate.templates.service import TemplateService
    from tollgate.usage.analytics import UsageAnalytics
    from tollgate.usage.metrics import RequestMetrics


@cache
def table() -> DynamoTable:
    from tollgate.aws.dynamodb import DynamoTable

    return DynamoTable(get_settings().table_name)


@cache
def identity_secrets() -> ParameterSecrets:
    from tollgate.aws.secrets import ParameterSecrets

    settings = get_settings()
    return ParameterSecrets(
        settings.key_pepper_secret, settings.admin_key_parameter, max_age=settings.secrets_cache_seconds
    )


@cache
def identity_store() -> DynamoIdentityStore:
    from tollgate.aws.identity_store import DynamoIdentityStore

    return DynamoIdentityStore(table())


@cache
def identity() -> IdentityService:
    from tollgate.identity.service import IdentityService
    from tollgate.plans import load_plans

    settings = get_settings()
    return IdentityService(
        identity_store(),
        identity_secrets(),
        plan_names=load_plans().names,
        last_used_resolution=timedelta(seconds=settings.key_last_used_resolution_seconds),
    )


@cache
def idempotency_store() -> DynamoIdempotencyStore:
    from tollgate.aws.idempotency_store import DynamoIdempotencyStore

    return DynamoIdempotencyStore(table())


@cache
def metering() -> MeteringService:
    """Limits, quotas and the credit ledger: the API every feature charges through."""
    from tollgate.aws.metering_store import DynamoMeteringStore
    from tollgate.metering.pricing import default_pricing
    from tollgate.metering.service import MeteringService
    from tollgate.plans import load_plans

    return MeteringService(DynamoMeteringStore(table()), default_pricing(), load_plans())


@cache
def alert_publisher() -> AlertPublisher | None:
    """The alerts bus, or ``None`` where none is configured (alerts then wait for the
    scheduler of an environment that has one)."""
    from tollgate.aws.events import EventBridgePublisher

    bus = get_settings().event_bus_name
    return EventBridgePublisher(bus) if bus else None


def webhook_secrets() -> list[bytes]:
    """The payment webhook's signing secret(s). Not cached here: Powertools caches them for
    ``secrets_cache_seconds``, so a rotated secret is picked up."""
    from aws_lambda_powertools.utilities import parameters

    from tollgate.errors import ServiceUnavailable

    settings = get_settings()
    try:
        value = parameters.get_secret(settings.payment_webhook_secret, max_age=settings.secrets_cache_seconds)
    except parameters.GetParameterError:
        raise ServiceUnavailable(
            "The webhook secret cannot be read; retry shortly", headers={"Retry-After": "5"}
        ) from None
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return [text.encode("utf-8")] if text else []


class IdentityOrgDirectory:
    """The scheduler's ``OrgDirectory``: every org id, from the identity store."""

    def __init__(self, store: IdentityStore) -> None:
        self._store = store

    def org_ids(self) -> Iterator[str]:
        return self._store.list_org_ids()


@cache
def org_directory() -> IdentityOrgDirectory:
    return IdentityOrgDirectory(identity_store())


@cache
def scheduled_work() -> ScheduledWork:
    """The scheduler's work (renewals, expiry, stale holds, alerts) over every org."""
    from tollgate.credits.scheduled import ScheduledWork

    settings = get_settings()
    return ScheduledWork(
        metering(),
        org_directory(),
        alert_publisher(),
        stale_after=timedelta(seconds=settings.stale_reservation_seconds),
        usage=usage_rollup(),
    )


@cache
def providers() -> ProviderCatalog:
    """Every AI provider: keys from the environment first (local), then Secrets Manager/SSM."""
    from tollgate.aws.provider_keys import ParameterProviderKeys
    from tollgate.providers.catalog import build_providers
    from tollgate.providers.keys import ChainedProviderKeys, EnvProviderKeys, ProviderKeySource

    settings = get_settings()
    sources: list[ProviderKeySource] = [EnvProviderKeys.from_settings(settings)]
    aws_keys = ParameterProviderKeys.from_settings(settings)
    if aws_keys is not None:
        sources.append(aws_keys)
    return build_providers(settings, ChainedProviderKeys(sources))


@cache
def usage_log() -> DynamoUsageLog:
    """The usage log every request leaves (S9), with its daily aggregates; each committed
    entry also emits the request's metrics."""
    from tollgate.aws.usage_store import DynamoUsageLog

    return DynamoUsageLog(
        table(), timedelta(days=get_settings().usage_log_retention_days), on_logged=request_metrics().record
    )


# -- usage analytics (issue 7, docs/usage.md) ------------------------------------------------------


@cache
def request_metrics() -> RequestMetrics:
    """EMF metrics of every logged request (``tollgate.usage.metrics``)."""
    from tollgate.metering.pricing import load_features
    from tollgate.usage.metrics import RequestMetrics, metrics

    return RequestMetrics(metrics, load_features().features)


@cache
def usage_analytics() -> UsageAnalytics:
    """Usage reports, the dashboard's figures, the log browser and the monthly rollup."""
    from tollgate.aws.usage_store import DynamoUsageAggregates
    from tollgate.usage.analytics import UsageAnalytics

    return UsageAnalytics(DynamoUsageAggregates(table()), usage_log())


@cache
def usage_rollup() -> UsageAnalytics:
    """The scheduler's monthly rollup: as ``usage_analytics``, reading days consistently."""
    from tollgate.aws.usage_store import DynamoUsageAggregates
    from tollgate.usage.analytics import UsageAnalytics

    return UsageAnalytics(DynamoUsageAggregates(table(), consistent=True), usage_log())


@cache
def generation() -> GenerationService:
    """Chat, completions and embeddings: checked, cached, charged and recorded."""
    from tollgate.aws.generation_store import DynamoGenerationStore
    from tollgate.aws.response_cache import S3ResponseCache
    from tollgate.generation.registry import load_models
    from tollgate.generation.security import ContentLimits
    from tollgate.generation.service import GenerationService

    settings = get_settings()
    return GenerationService(
        providers(),
        metering(),
        DynamoGenerationStore(table(), usage_log()),
        S3ResponseCache(settings.cache_bucket),
        load_models(),
        ContentLimits.from_settings(settings),
        templates=template_binder,  # built only when a request names a template
    )


# -- images (issue 5) ---------------------------------------------------------------------------


@cache
def image_jobs() -> DynamoImageJobStore:
    from tollgate.aws.image_store import DynamoImageJobStore

    return DynamoImageJobStore(table(), usage_log())


@cache
def image_assets() -> S3AssetStore:
    from tollgate.aws.assets import S3AssetStore

    return S3AssetStore(get_settings().assets_bucket)


@cache
def images() -> ImageService:
    """Image jobs, batches, synchronous generations and colour analysis."""
    from tollgate.aws.job_queue import SqsJobQueue
    from tollgate.errors import ServiceUnavailable
    from tollgate.generation.registry import load_models
    from tollgate.generation.security import ContentLimits
    from tollgate.images.service import ImageService

    settings = get_settings()
    if settings.image_jobs_queue_url is None:
        raise ServiceUnavailable("No image jobs queue is configured (IMAGE_JOBS_QUEUE_URL)")
    return ImageService(
        providers(),
        metering(),
        image_jobs(),
        image_assets(),
        SqsJobQueue(settings.image_jobs_queue_url),
        load_models(),
        usage_log(),
        url_ttl_seconds=settings.asset_url_ttl_seconds,
        sync_max_images=settings.image_sync_max_images,
        limits=ContentLimits.from_settings(settings),
        templates=templates(),  # a job from an image template (S8)
    )


@cache
def image_worker() -> ImageWorker:
    """The worker of the image jobs queue."""
    from tollgate.generation.registry import load_models
    from tollgate.images.worker import ImageWorker

    return ImageWorker(
        providers(),
        metering(),
        image_jobs(),
        image_assets(),
        load_models(),
        max_receive_count=get_settings().image_job_max_receive_count,
        templates=templates(),  # counts the use of a job's template when it completes
    )


# -- end of images ------------------------------------------------------------------------------


# -- templates and conversations (issue 6) ----------------------------------------------------


@cache
def templates() -> TemplateService:
    """Prompt templates (S8): versions, tenancy, rendering, and their use counted."""
    from tollgate.aws.template_store import DynamoTemplateStore
    from tollgate.templates.service import TemplateService

    # The model registry and feature catalog are loaded on the first save (cold start).
    return TemplateService(DynamoTemplateStore(table()))


@cache
def template_binder() -> TemplateBinder:
    """What ``/v1/generate`` does with a ``template_id`` (rendered, priced, bound)."""
    from tollgate.templates.binding import TemplateBinder

    return TemplateBinder(templates())


@cache
def conversations() -> ConversationService:
    """Multi-turn chat kept on the server (S8b), each turn through ``generation()``."""
    from tollgate.aws.conversation_store import DynamoConversationStore
    from tollgate.conversations.service import ConversationService

    return ConversationService(DynamoConversationStore(table()), generation())


# -----------------------------------------------------------------------------------------------


def idempotency_ttl() -> int:
    return get_settings().idempotency_ttl_seconds


def reset() -> None:
    """Forget every built service and the settings (tests that change the environment)."""
    from tollgate.aws import clients

    for built in (
        table,
        identity_secrets,
        identity_store,
        identity,
        idempotency_store,
        metering,
        alert_publisher,
        org_directory,
        scheduled_work,
        providers,
        usage_log,
        request_metrics,
        usage_analytics,
        usage_rollup,
        generation,
        image_jobs,
        image_assets,
        images,
        image_worker,
        templates,
        template_binder,
        conversations,
        get_settings,
    ):
        built.cache_clear()
    clients.reset()
