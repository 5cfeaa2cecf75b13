"""The generation request path (S6, S9, S12): the one place a generation is checked, cached,
charged, sent to a provider and recorded.

For every request, in this order:

1. content security on the messages (the org's policy): block (422), redact, or flag;
2. the exact cache (when the request may be cached): a hit is answered without the provider;
3. ``reserve`` the estimate (prompt tokens counted with tiktoken + the output budget), with the
   request id as the reservation id: limits, quotas and credits are checked here;
4. the provider call, walking the model's fallback chain;
5. ``settle`` with the actual usage (the provider's figures, else our own count), or
   ``release`` on any failure (nothing charged); the request record and its usage log entry
   are written in that same transaction (``attach``), so a charge never lacks its record;
6. store the answer in the cache.

A cache hit is charged in one step (``MeteringService.charge``: counted in the rate limits,
priced at the feature's cache-hit rule, free by default, recorded in the same write). No boto3
here: the stores are ports.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from msgspec import Struct
from msgspec.structs import asdict, replace

from tollgate.clock import Clock, SystemClock
from tollgate.errors import Conflict, FieldError, NotFound, TollgateError, ValidationFailed
from tollgate.generation.cache_key import (
    CacheKind,
    CacheOptions,
    cache_key,
    cache_ttl,
    canonical_json,
    is_cacheable,
)
from tollgate.generation.context import RequestContext, TemplateBinding
from tollgate.generation.fallback import call_with_fallback
from tollgate.generation.records import (
    GenerationRecord,
    GenerationStore,
    Rating,
    RecordFilter,
    RecordPage,
    RequestStatus,
    ResponseCache,
)
from tollgate.generation.registry import ModelRegistry, ModelSpec, ResolvedChain
from tollgate.generation.requests import (
    ChatCompletionRequest,
    EmbeddingsRequest,
    GenerateRequest,
    SamplingParams,
)
from tollgate.generation.security import ContentLimits, scan_messages, scan_texts
from tollgate.identity.models import Caller, Role
from tollgate.metering.models import Release, Reservation, Settlement, Usage
from tollgate.metering.pricing import FeatureRule
from tollgate.metering.service import settled_despite_failure
from tollgate.providers.base import ChatMessage, ChatRequest, Provider
from tollgate.providers.errors import UpstreamError
from tollgate.staging import StagedWrites
from tollgate.tokens import count_tokens
from tollgate.usage.log import UsageLogEntry, UsageStatus

if TYPE_CHECKING:  # the catalog imports every provider and httpx: built on first use only
    from tollgate.providers.catalog import ProviderCatalog

logger = Logger()

DEFAULT_MAX_OUTPUT_TOKENS = 1024
"""The output budget when a chat request names none (sent to the provider and reserved)."""
LOG_RETENTION = timedelta(days=90)
MAX_RECORD_TEXT = 100_000
"""Longest answer text kept on a record (a DynamoDB item is at most 400 KB)."""
DEFAULT_FEATURES: Mapping[CacheKind, str] = {
    "chat": "chat",
    "completion": "text",
    "embedding": "embedding",
    "image": "image",
}


class Metering(Protocol):
    """The part of ``MeteringService`` a generation needs (the request path of S4)."""

    def reserve(
        self, caller: Caller, feature: str | FeatureRule, estimate: Usage, reservation_id: str
    ) -> Reservation: ...

    def settle(
        self,
        org_id: str,
        reservation_id: str,
        actual: Usage,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement: ...

    def release(
        self,
        org_id: str,
        reservation_id: str,
        attach: Callable[[Release], StagedWrites | None] | None = None,
    ) -> Release: ...

    def reservation(self, org_id: str, reservation_id: str) -> Reservation: ...

    def charge(
        self,
        caller: Caller,
        feature: str | FeatureRule,
        usage: Usage,
        reservation_id: str,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement: ...


class TemplateResolver(Protocol):
    """What ``generate`` needs of templates (``tollgate.templates.binding.TemplateBinder``)."""

    def bind(self, ctx: RequestContext, body: GenerateRequest) -> tuple[RequestContext, GenerateRequest]:
        """The request with its template rendered into a prompt, and the context bound to it."""
        ...


class Answer(Struct, frozen=True):
    """What a provider answered, as cached: ``body`` is enough to rebuild the response."""

    body: dict[str, Any]
    input_tokens: int
    output_tokens: int


class Outcome(Struct, frozen=True):
    """The result of one request: its record, the answer, and what the headers say."""

    record: GenerationRecord
    answer: dict[str, Any]
    cache_hit: bool
    credits_charged: int
    overhead_ms: int


class _Prepared(Struct, frozen=True):
    kind: CacheKind
    feature: str
    pricing: str | FeatureRule
    chain: ResolvedChain
    cache_payload: dict[str, Any]
    cache_options: CacheOptions | None
    prompt: Any
    params: dict[str, Any]
    estimate_input: int
    estimate_output: int
    findings: tuple[dict[str, Any], ...]
    invoke: Callable[[Provider, ModelSpec], Answer]


def _split(model_name: str) -> tuple[str, str]:
    provider, _, name = model_name.partition("/")
    return provider, name


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _record_body(kind: CacheKind, body: Mapping[str, Any]) -> dict[str, Any]:
    """The answer as kept on the record: embeddings without their vectors, long text cut."""
    if kind == "embedding":
        vectors = body.get("vectors") or []
        return {
            "model": body.get("model"),
            "count": len(vectors),
            "dimensions": len(vectors[0]) if vectors else 0,
        }
    text = str(body.get("text", ""))
    kept = dict(body)
    if len(text) > MAX_RECORD_TEXT:
        kept["text"] = text[:MAX_RECORD_TEXT]
        kept["truncated"] = True
    return kept


class GenerationService:
    """Chat, completions and embeddings, charged through metering and recorded."""

    def __init__(
        self,
        providers: ProviderCatalog,
        metering: Metering,
        store: GenerationStore,
        cache: ResponseCache,
        registry: ModelRegistry,
        limits: ContentLimits | None = None,
        clock: Clock | None = None,
        timer: Callable[[], float] = time.perf_counter,
        templates: Callable[[], TemplateResolver] | None = None,
    ) -> None:
        self._providers = providers
        self._metering = metering
        self._store = store
        self._cache = cache
        self._registry = registry
        self._limits = limits or ContentLimits()
        self._clock = clock or SystemClock()
        self._timer = timer
        self._templates = templates  # built on first use: most requests name no template

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    @property
    def providers(self) -> ProviderCatalog:
        return self._providers

    @property
    def content_limits(self) -> ContentLimits:
        return self._limits

    # -- the request path ------------------------------------------------------------------

    def chat(self, ctx: RequestContext, body: ChatCompletionRequest) -> Outcome:
        """``POST /v1/chat/completions``."""
        messages = tuple(message.to_message() for message in body.messages)
        sampling = SamplingParams(
            max_tokens=body.effective_max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stop,
        )
        return self._chat_like(
            ctx, "chat", body.model, messages, sampling, body.feature, body.cache, body.metadata, body.user
        )

    def generate(self, ctx: RequestContext, body: GenerateRequest) -> Outcome:
        """``POST /v1/generate``: a prompt, messages, or a template (S8), rendered first into a
        prompt with the template's defaults and price, and the request bound to its version."""
        if body.template_id is not None:
            if self._templates is None:
                raise NotFound("Templates are not available here")
            ctx, body = self._templates().bind(ctx, body)
        if body.model is None:
            raise ValidationFailed([FieldError("model", "Field required", "missing")])
        messages = (
            tuple(message.to_message() for message in body.messages)
            if body.messages is not None
            else (ChatMessage(role="user", content=body.prompt or ""),)
        )
        outcome = self._chat_like(
            ctx, body.kind, body.model, messages, body.params, body.feature, body.cache, body.metadata, None
        )
        if ctx.template is not None and ctx.template.count_use is not None:
            ctx.template.count_use()
        return outcome

    def embed(self, ctx: RequestContext, body: EmbeddingsRequest) -> Outcome:
        """``POST /v1/embeddings``."""
        chain = self._registry.resolve(body.model, configured=self._providers.configured(), kind="embedding")
        feature = body.feature or DEFAULT_FEATURES["embedding"]
        try:
            scanned = scan_texts(body.inputs, ctx.org.policy, self._limits)
        except TollgateError as exc:
            self._refused(ctx, "embedding", chain, feature, list(body.inputs), exc)
            raise
        texts = scanned.texts
        encoding = chain.models[0].encoding
        estimate = sum(count_tokens(text, encoding) for text in texts)

        def invoke(provider: Provider, spec: ModelSpec) -> Answer:
            request = replace(body.to_provider(spec.model_id), inputs=texts)
            result = provider.embed(request)
            tokens = result.usage.input_tokens
            if tokens is None:
                tokens = sum(count_tokens(text, spec.encoding) for text in texts)
            return Answer({"vectors": [list(v) for v in result.vectors], "model": spec.name}, tokens, 0)

        params = body.model_dump(exclude_none=True, exclude={"input", "cache", "encoding_format"})
        payload = {**params, "input": list(texts)}
        return self._run(
            ctx,
            _Prepared(
                kind="embedding",
                feature=feature,
                pricing=feature,
                chain=chain,
                cache_payload=payload,
                cache_options=body.cache,
                prompt=list(texts),
                params=params,
                estimate_input=estimate,
                estimate_output=0,
                findings=tuple(f.as_record() for f in scanned.findings),
                invoke=invoke,
            ),
        )

    def regenerate(self, ctx: RequestContext, parent_id: str) -> Outcome:
        """Run a recorded request again: a new record, the cache skipped, linked to its parent."""
        parent = self.get(ctx.caller, parent_id)
        if parent.prompt is None:
            raise Conflict("This org keeps no prompts, so its requests cannot be regenerated")
        params = dict(parent.params)
        template = None
        if parent.template_id is not None and parent.template_version is not None:
            # The same template version and price; not counted as another use of the template.
            pricing = params.get("pricing")
            template = TemplateBinding(
                parent.template_id,
                parent.template_version,
                FeatureRule.model_validate(pricing) if isinstance(pricing, dict) else None,
            )
        child = replace(ctx, parent_id=parent.request_id, template=template)
        skip = CacheOptions(skip=True)
        if parent.kind == "embedding":
            body = EmbeddingsRequest.model_validate({**params, "input": parent.prompt, "cache": skip})
            return self.embed(child, body)
        messages = tuple(
            ChatMessage(role=m["role"], content=m["content"], name=m.get("name")) for m in parent.prompt
        )
        sampling = SamplingParams.model_validate(params.get("params") or {})
        return self._chat_like(
            child,
            "chat" if parent.kind == "chat" else "completion",
            parent.requested_model,
            messages,
            sampling,
            params.get("feature"),
            skip,
            params.get("metadata"),
            params.get("user"),
        )

    def _chat_like(
        self,
        ctx: RequestContext,
        kind: CacheKind,
        model: str,
        messages: tuple[ChatMessage, ...],
        sampling: SamplingParams,
        feature: str | None,
        cache: CacheOptions | None,
        metadata: Mapping[str, Any] | None,
        user: str | None,
    ) -> Outcome:
        chain = self._registry.resolve(model, configured=self._providers.configured(), kind="chat")
        declared = ctx.template.pricing if ctx.template is not None else None
        feature = declared.name if declared is not None else feature or DEFAULT_FEATURES[kind]
        try:
            scanned = scan_messages(messages, ctx.org.policy, self._limits)
        except TollgateError as exc:
            self._refused(ctx, kind, chain, feature, [asdict(m) for m in messages], exc)
            raise
        sent = scanned.messages
        first = chain.models[0]
        budget = sampling.max_tokens or min(
            DEFAULT_MAX_OUTPUT_TOKENS, first.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        )
        estimate = sum(count_tokens(m.content, first.encoding) for m in sent)
        stop = (sampling.stop,) if isinstance(sampling.stop, str) else tuple(sampling.stop or ())

        def invoke(provider: Provider, spec: ModelSpec) -> Answer:
            result = provider.chat(
                ChatRequest(
                    model=spec.model_id,
                    messages=sent,
                    max_tokens=budget,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    seed=sampling.seed,
                    stop=stop,
                    user=user,
                    metadata=dict(metadata or {}),
                )
            )
            tokens_in = result.usage.input_tokens
            if tokens_in is None:
                tokens_in = sum(count_tokens(m.content, spec.encoding) for m in sent)
            tokens_out = result.usage.output_tokens
            if tokens_out is None:
                tokens_out = count_tokens(result.text, spec.encoding)
            body = {"text": result.text, "finish_reason": result.finish_reason, "model": spec.name}
            return Answer(body, tokens_in, tokens_out)

        prompt = [{k: v for k, v in asdict(m).items() if v is not None} for m in sent]
        sampling_dump = sampling.model_dump(exclude_none=True)
        params: dict[str, Any] = {"params": sampling_dump}
        for name, value in (("feature", feature), ("metadata", metadata), ("user", user)):
            if value:
                params[name] = value
        if declared is not None:
            params["pricing"] = declared.model_dump(mode="json")  # regenerate charges it again
        payload = {"kind": kind, "messages": prompt, **sampling_dump}
        return self._run(
            ctx,
            _Prepared(
                kind=kind,
                feature=feature,
                pricing=declared or feature,
                chain=chain,
                cache_payload=payload,
                cache_options=cache,
                prompt=prompt,
                params=params,
                estimate_input=estimate,
                estimate_output=budget,
                findings=tuple(f.as_record() for f in scanned.findings),
                invoke=invoke,
            ),
        )

    def _base_record(
        self,
        ctx: RequestContext,
        kind: CacheKind,
        chain: ResolvedChain,
        feature: str,
        prompt: Any,
        params: dict[str, Any],
        findings: tuple[dict[str, Any], ...] = (),
        *,
        keep_prompt: bool = True,
    ) -> GenerationRecord:
        first = chain.models[0]
        return GenerationRecord(
            request_id=ctx.request_id,
            org_id=ctx.org_id,
            user=ctx.caller.user,
            key_id=ctx.caller.key_id,
            kind=kind,
            requested_model=chain.requested,
            model=first.name,
            provider=first.provider,
            feature=feature,
            status=RequestStatus.PROCESSING,
            created_at=self._clock.now(),
            prompt_hash=hashlib.sha256(canonical_json(prompt).encode("utf-8")).hexdigest(),
            prompt=prompt if ctx.org.keep_prompts and keep_prompt else None,
            params=params,
            findings=findings,
            parent_id=ctx.parent_id,
            template_id=ctx.template.template_id if ctx.template else None,
            template_version=ctx.template.version if ctx.template else None,
        )

    def _refused(
        self,
        ctx: RequestContext,
        kind: CacheKind,
        chain: ResolvedChain,
        feature: str,
        prompt: Any,
        exc: TollgateError,
    ) -> None:
        """Record a request content security refused: a failed record (without the prompt,
        only its hash) and its usage log entry, then the caller raises."""
        started = self._timer()
        base = self._base_record(ctx, kind, chain, feature, prompt, {}, keep_prompt=False)
        self._record_failure(self._failed(base, exc, started, 0.0))

    def _run(self, ctx: RequestContext, job: _Prepared) -> Outcome:
        started = self._timer()
        org_id = ctx.org_id
        first = job.chain.models[0]
        now = self._clock.now()
        base = self._base_record(ctx, job.kind, job.chain, job.feature, job.prompt, job.params, job.findings)

        cacheable = is_cacheable(
            job.kind, job.cache_payload, job.cache_options, deterministic_model=first.deterministic
        )
        digest = (
            cache_key(org_id, first.provider, job.chain.requested, job.cache_payload) if cacheable else None
        )
        if digest is not None:
            cached = self._cache.get(job.kind, org_id, digest, now)
            if cached is not None:
                return self._answer_from_cache(ctx, job, base, cached, started)

        provider_name, model_name = _split(first.name)
        estimate = Usage(
            provider=provider_name,
            model=model_name,
            input_tokens=job.estimate_input,
            output_tokens=job.estimate_output,
        )
        try:
            self._metering.reserve(ctx.caller, job.pricing, estimate, ctx.request_id)
        except TollgateError as exc:  # refused (402, 429, unknown feature): logged, nothing held
            self._record_failure(self._failed(base, exc, started, 0.0))
            raise
        provider_started = self._timer()
        try:
            answered = call_with_fallback(job.chain, self._providers, job.invoke)
        except Exception as exc:
            failed = self._failed(base, exc, started, self._timer() - provider_started)
            self._release_with(org_id, ctx.request_id, failed)
            raise
        provider_seconds = self._timer() - provider_started
        answer = answered.value
        spec = answered.model
        provider_name, model_name = _split(spec.name)
        total = self._timer() - started
        done = replace(
            base,
            model=spec.name,
            provider=spec.provider,
            status=RequestStatus.COMPLETED,
            result=_record_body(job.kind, answer.body),
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            latency_ms=_ms(total),
            overhead_ms=_ms(total - provider_seconds),
            fallbacks=tuple(
                {"model": f.model, "code": f.code, "provider_status": f.status} for f in answered.failed
            ),
            completed_at=self._clock.now(),
        )

        def charged(settlement: Settlement) -> GenerationRecord:
            return replace(
                done,
                cost_micro_usd=settlement.actual.cost_micro_usd,
                credits_charged=settlement.charged_credits,
            )

        recorded: list[GenerationRecord] = []

        def record_with(settled: Settlement) -> StagedWrites:
            recorded.append(charged(settled))
            return self._stage(recorded[-1], ctx)

        # The record and its usage log entry are written in the settlement's own transaction.
        try:
            settlement = self._metering.settle(
                org_id,
                ctx.request_id,
                Usage(
                    provider=provider_name,
                    model=model_name,
                    input_tokens=answer.input_tokens,
                    output_tokens=answer.output_tokens,
                ),
                attach=record_with,
            )
        except Exception as exc:
            committed = self._settled_despite(
                org_id, ctx.request_id, self._failed(base, exc, started, provider_seconds)
            )
            if committed is None:
                raise
            settlement = committed
            recorded.clear()  # the record committed is the one of that settlement
        if digest is not None:
            stored = {
                **answer.body,
                "input_tokens": answer.input_tokens,
                "output_tokens": answer.output_tokens,
            }
            ttl = cache_ttl(job.kind, job.cache_options)
            self._cache.put(job.kind, org_id, digest, stored, ttl, now)
        record = recorded[-1] if recorded else charged(settlement)  # none: settled before
        return Outcome(record, answer.body, False, settlement.charged_credits, record.overhead_ms)

    def _answer_from_cache(
        self,
        ctx: RequestContext,
        job: _Prepared,
        base: GenerationRecord,
        cached: dict[str, Any],
        started: float,
    ) -> Outcome:
        model = str(cached.get("model") or base.model)
        provider_name, model_name = _split(model)
        input_tokens = int(cached.get("input_tokens") or 0)
        output_tokens = int(cached.get("output_tokens") or 0)
        usage = Usage(
            provider=provider_name,
            model=model_name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_hit=True,
        )
        body = {k: v for k, v in cached.items() if k not in ("input_tokens", "output_tokens")}
        total = _ms(self._timer() - started)
        hit = replace(
            base,
            model=model,
            provider=provider_name,
            status=RequestStatus.COMPLETED,
            result=_record_body(job.kind, body),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_micro_usd=0,
            latency_ms=total,
            overhead_ms=total,
            cached=True,
            completed_at=self._clock.now(),
        )
        # Counted in the limits and charged at the cache-hit price in one step, recorded with it.
        try:
            settlement = self._metering.charge(
                ctx.caller,
                job.pricing,
                usage,
                ctx.request_id,
                attach=lambda settled: self._stage(
                    replace(hit, credits_charged=settled.charged_credits), ctx
                ),
            )
        except TollgateError as exc:
            self._record_failure(self._failed(base, exc, started, 0.0))
            raise
        record = replace(hit, credits_charged=settlement.charged_credits)
        return Outcome(record, body, True, settlement.charged_credits, total)

    def _stage(self, record: GenerationRecord, ctx: RequestContext | None = None) -> StagedWrites:
        """The record and its usage log entry; for a completed request also what the context
        adds (a template's use counted, a conversation's messages), all for one transaction."""
        staged = self._store.stage(record, self._log_entry(record))
        if ctx is not None and record.status is RequestStatus.COMPLETED:
            for more in ctx.completed_writes(record):
                staged = staged.plus(more)
        return staged

    def _failed(
        self, base: GenerationRecord, exc: Exception, started: float, provider_seconds: float
    ) -> GenerationRecord:
        total = self._timer() - started
        error: dict[str, Any] = {"class": type(exc).__name__}
        if isinstance(exc, TollgateError):
            error.update(code=exc.code, status=exc.status, detail=exc.detail)
            if isinstance(exc, UpstreamError):
                error["provider"] = exc.provider
                if exc.upstream_status is not None:
                    error["provider_status"] = exc.upstream_status
        return replace(
            base,
            status=RequestStatus.FAILED,
            error=error,
            latency_ms=_ms(total),
            overhead_ms=_ms(total - provider_seconds),
            completed_at=self._clock.now(),
        )

    def _settled_despite(self, org_id: str, request_id: str, failed: GenerationRecord) -> Settlement | None:
        """The settlement of a failed settle, if it committed after all (its record was written
        with it); a reservation still held is released now, with the failure's record."""
        reservation = settled_despite_failure(
            self._metering,
            org_id,
            request_id,
            release_held=lambda: self._release_with(org_id, request_id, failed),
        )
        return reservation.settlement if reservation is not None else None

    def _release_with(self, org_id: str, request_id: str, failed: GenerationRecord) -> None:
        """Release the reservation of a failed call, with its record in the same transaction.
        The client must get the provider's error, not a storage one: if this fails, the
        scheduler releases the stale hold later, and the record is tried on its own."""
        try:
            self._metering.release(org_id, request_id, attach=lambda _released: self._stage(failed))
        except Exception:
            logger.exception("could not release a failed generation request")
            self._record_failure(failed)

    def _record_failure(self, record: GenerationRecord) -> None:
        try:
            self._store.save(record, self._log_entry(record))
        except Exception:  # the client must get the real error, not a storage one
            logger.exception("could not record a failed generation request")

    def _log_entry(self, record: GenerationRecord) -> UsageLogEntry:
        return UsageLogEntry(
            request_id=record.request_id,
            org_id=record.org_id,
            user=record.user,
            key_id=record.key_id,
            model=record.model,
            provider=record.provider,
            feature=record.feature,
            kind=record.kind,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cost_micro_usd=record.cost_micro_usd,
            credits=record.credits_charged,
            latency_ms=record.latency_ms,
            cache_hit=record.cached,
            status=UsageStatus(record.status.value),
            error_class=str(record.error["class"]) if record.error else None,
            error_code=str(record.error["code"]) if record.error and record.error.get("code") else None,
            at=record.completed_at or record.created_at,
            template_id=record.template_id,
            template_version=record.template_version,
        )

    # -- records -----------------------------------------------------------------------------

    def get(self, caller: Caller, request_id: str) -> GenerationRecord:
        """A record of the caller's org; a member sees only its own. Anything else is 404."""
        record = self._store.get(caller.org_id, request_id) if caller.org_id else None
        if record is None or (caller.role is Role.MEMBER and record.user != caller.user):
            raise NotFound(f"No request {request_id!r}")
        return record

    def records(self, caller: Caller, filters: RecordFilter, limit: int, cursor: str | None) -> RecordPage:
        """The caller's org's records, newest first (a member's own only)."""
        if caller.org_id is None:
            return RecordPage((), None)
        if caller.role is Role.MEMBER:
            filters = replace(filters, user=caller.user)
        return self._store.list(caller.org_id, filters, limit, cursor)

    def rate(self, caller: Caller, request_id: str, score: int, comment: str | None) -> GenerationRecord:
        """Rate a request (1 to 5) the caller may see; rating again replaces the rating."""
        record = self.get(caller, request_id)
        rating = Rating(score=score, comment=comment, rated_at=self._clock.now(), rated_by=caller.user)
        rated = self._store.rate(record.org_id, request_id, rating)
        if rated is None:
            raise NotFound(f"No request {request_id!r}")
        return rated


__all__ = [
    "LOG_RETENTION",
    "Answer",
    "GenerationService",
    "Outcome",
    "TemplateResolver",
]
