"""The generate function: the OpenAI-compatible API, the native ``/v1/generate`` and the
generation request records (S6, S9, S11, S12).

Routes are thin: they build the request context (who, which request id, the org's content
policy) and call ``GenerationService``, which checks, caches, charges and records. Every POST
that costs money honours ``Idempotency-Key``. Answers carry ``X-Request-Id`` (the record's id),
``X-Cache``, ``X-Credits-Charged`` and ``X-Gateway-Overhead-Ms``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from tollgate import services
from tollgate.api.idempotency import idempotent
from tollgate.api.params import Body, Query, field_errors, responds
from tollgate.api.resolver import (
    build_resolver,
    current_caller,
    handle_api_event,
    json_response,
    request_id_of,
)
from tollgate.api.rest import Response
from tollgate.api.schemas.common import exact_json_response
from tollgate.api.schemas.generate import (
    MAX_PAGE,
    ProviderListOut,
    RatingRequest,
    RequestOut,
    RequestPageOut,
    check_request_id,
)
from tollgate.credits.amounts import credits_of_units
from tollgate.errors import Forbidden, ValidationFailed
from tollgate.generation.context import OrgGenerationSettings, RequestContext
from tollgate.generation.requests import ChatCompletionRequest, EmbeddingsRequest, GenerateRequest
from tollgate.generation.responses import (
    AssistantMessageOut,
    ChatCompletionOut,
    ChatUsageOut,
    ChoiceOut,
    EmbeddingListOut,
    ModelListOut,
    embedding_list,
    model_list,
)
from tollgate.lazy import lazy_module
from tollgate.templates.ids import check_template_id
from tollgate.usage.metrics import metrics

if TYPE_CHECKING:  # the generation service loads with services.generation(), on first use
    from tollgate.api.schemas import conversations, template_generate
    from tollgate.generation import records
    from tollgate.generation.service import Outcome
else:  # only the conversation and template routes need these: imported when one first runs
    conversations = lazy_module("tollgate.api.schemas.conversations")
    template_generate = lazy_module("tollgate.api.schemas.template_generate")
    records = lazy_module("tollgate.generation.records")  # the request list's filter

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
app = build_resolver()
idempotent_route = idempotent(services.idempotency_store, services.idempotency_ttl)

MODELS_CREATED = 1_735_689_600  # 2025-01-01: the registry's one fixed "created" timestamp
_FINISH = {"stop", "length", "content_filter", "tool_calls"}


def _context() -> RequestContext:
    """The caller, this request's id (the record's and the reservation's) and the org's
    generation settings (content policy, whether prompts are kept)."""
    caller = current_caller(app)
    if caller.org_id is None:
        raise Forbidden("The platform admin key generates for no org; use an org's key")
    # The authorizer hands the org's settings over with the caller; read the org only if not.
    settings = (
        caller.org.settings
        if caller.org is not None
        else services.identity().get_org(caller, caller.org_id).settings
    )
    return RequestContext(
        caller=caller,
        request_id=request_id_of(app.current_event.raw_event),
        org=OrgGenerationSettings.from_org_settings(settings),
    )


def _headers(outcome: Outcome, started: float) -> dict[str, str]:
    """The generation headers. The overhead is this handler's time less the provider's."""
    record = outcome.record
    provider_ms = 0 if outcome.cache_hit else max(0, record.latency_ms - record.overhead_ms)
    overhead = max(0, round((time.perf_counter() - started) * 1000) - provider_ms)
    return {
        "X-Cache": "HIT" if outcome.cache_hit else "MISS",
        "X-Credits-Charged": str(credits_of_units(outcome.credits_charged)),
        "X-Gateway-Overhead-Ms": str(overhead),
    }


def _chat_out(outcome: Outcome) -> ChatCompletionOut:
    record = outcome.record
    answer = outcome.answer
    finish = str(answer.get("finish_reason", "stop"))
    return ChatCompletionOut(
        id=f"chatcmpl-{record.request_id}",
        created=int(record.created_at.timestamp()),
        model=str(answer.get("model", record.model)),
        choices=[
            ChoiceOut(
                message=AssistantMessageOut(content=str(answer.get("text", ""))),
                finish_reason=finish if finish in _FINISH else "stop",  # type: ignore[arg-type]
            )
        ],
        usage=ChatUsageOut(
            prompt_tokens=record.input_tokens,
            completion_tokens=record.output_tokens,
            total_tokens=record.input_tokens + record.output_tokens,
        ),
    )


def _embeddings_out(outcome: Outcome, encoding_format: Literal["float", "base64"]) -> EmbeddingListOut:
    vectors = outcome.answer.get("vectors") or []
    return embedding_list(
        vectors,
        model=str(outcome.answer.get("model", outcome.record.model)),
        input_tokens=outcome.record.input_tokens,
        encoding_format=encoding_format,
    )


# -- OpenAI-compatible ---------------------------------------------------------------------------


@app.post("/v1/chat/completions", middlewares=[idempotent_route])
@responds(200, ChatCompletionOut)
def chat_completions(body: Annotated[ChatCompletionRequest, Body()]) -> Response[str]:
    started = time.perf_counter()
    outcome = services.generation().chat(_context(), body)
    return json_response(200, _chat_out(outcome), headers=_headers(outcome, started))


@app.post("/v1/embeddings", middlewares=[idempotent_route])
@responds(200, EmbeddingListOut)
def embeddings(body: Annotated[EmbeddingsRequest, Body()]) -> Response[str]:
    started = time.perf_counter()
    outcome = services.generation().embed(_context(), body)
    out = _embeddings_out(outcome, body.encoding_format)
    return json_response(200, out, headers=_headers(outcome, started))


@app.get("/v1/models")
def models() -> ModelListOut:
    registry = services.generation().registry
    aliases = sorted(registry.aliases.values(), key=lambda alias: alias.name)
    return model_list(registry.listed(), aliases, created=MODELS_CREATED)


@app.get("/v1/providers")
def providers() -> ProviderListOut:
    return ProviderListOut.of(services.generation().providers.statuses())


# -- native --------------------------------------------------------------------------------------


@app.post("/v1/generate", middlewares=[idempotent_route])
@responds(200, RequestOut)
def generate(body: Annotated[GenerateRequest, Body(exact_numbers=True)]) -> Response[str]:
    started = time.perf_counter()
    outcome = services.generation().generate(_context(), body)
    return exact_json_response(200, RequestOut.of(outcome.record), headers=_headers(outcome, started))


@app.get("/v1/requests")
@responds(200, RequestPageOut)
def list_requests(
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    status: Annotated[records.RequestStatus | None, Query()] = None,
    model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    feature: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    user: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> Response[str]:
    filters = records.RecordFilter(user=user, status=status, model=model, feature=feature)
    page = services.generation().records(current_caller(app), filters, limit, cursor)
    return exact_json_response(200, RequestPageOut.of(page))


@app.get("/v1/requests/<request_id>")
@responds(200, RequestOut)
def get_request(request_id: str) -> Response[str]:
    record = services.generation().get(current_caller(app), check_request_id(request_id))
    return exact_json_response(200, RequestOut.of(record))


@app.post("/v1/requests/<request_id>/regenerate", middlewares=[idempotent_route])
@responds(201, RequestOut)
def regenerate(request_id: str) -> Response[str]:
    started = time.perf_counter()
    outcome = services.generation().regenerate(_context(), check_request_id(request_id))
    return exact_json_response(201, RequestOut.of(outcome.record), headers=_headers(outcome, started))


@app.post("/v1/requests/<request_id>/rating")
@responds(200, RequestOut)
def rate_request(request_id: str, body: Annotated[RatingRequest, Body()]) -> Response[str]:
    record = services.generation().rate(
        current_caller(app), check_request_id(request_id), body.score, body.comment
    )
    return exact_json_response(200, RequestOut.of(record))


# -- templates and conversations (issue 6) -------------------------------------------------------


@app.post("/v1/templates/<template_id>/generate", middlewares=[idempotent_route])
@responds(200, RequestOut)
def generate_from_template(
    template_id: str, body: Annotated[template_generate.TemplateGenerateRequest, Body(exact_numbers=True)]
) -> Response[str]:
    started = time.perf_counter()
    try:
        request = GenerateRequest.model_validate(body.generate_body(check_template_id(template_id)))
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc)) from None
    outcome = services.generation().generate(_context(), request)
    return exact_json_response(200, RequestOut.of(outcome.record), headers=_headers(outcome, started))


@app.get("/v1/conversations")
@responds(200, lambda: conversations.ConversationPageOut)
def list_conversations(
    limit: Annotated[int, Query(ge=1, le=conversations.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
) -> Response[str]:
    page = services.conversations().conversations(current_caller(app), limit, cursor)
    return exact_json_response(200, conversations.ConversationPageOut.of(page))


@app.post("/v1/conversations")
@responds(201, lambda: conversations.ConversationOut)
def create_conversation(body: Annotated[conversations.ConversationIn, Body()]) -> Response[str]:
    conversation = services.conversations().create(current_caller(app), body.model, body.title, body.system)
    return exact_json_response(201, conversations.ConversationOut.of(conversation, messages=()))


@app.get("/v1/conversations/<conversation_id>")
@responds(200, lambda: conversations.ConversationOut)
def get_conversation(
    conversation_id: str,
    limit: Annotated[int, Query(ge=1, le=conversations.MAX_MESSAGES_PAGE)] = 100,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,8}$")] = None,
) -> Response[str]:
    conversation, page = services.conversations().messages(
        current_caller(app), conversation_id, int(cursor or 0), limit
    )
    return exact_json_response(
        200, conversations.ConversationOut.of(conversation, page.messages, page.next_cursor)
    )


@app.delete("/v1/conversations/<conversation_id>")
@responds(204)
def delete_conversation(conversation_id: str) -> Response[str]:
    services.conversations().delete(current_caller(app), conversation_id)
    return Response(status_code=204, body="")


@app.post("/v1/conversations/<conversation_id>/messages", middlewares=[idempotent_route])
@responds(201, lambda: conversations.TurnOut)
def post_message(conversation_id: str, body: Annotated[conversations.MessageIn, Body()]) -> Response[str]:
    started = time.perf_counter()
    turn = services.conversations().send(
        _context(), conversation_id, body.content, body.params, body.cache, body.metadata
    )
    return exact_json_response(201, conversations.TurnOut.of(turn), headers=_headers(turn.outcome, started))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics  # the request's metrics (tollgate.usage.metrics), emitted as it was logged
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
