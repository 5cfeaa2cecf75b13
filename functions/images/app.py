"""The images function: asynchronous image jobs and batches, the OpenAI-compatible synchronous
``/v1/images/generations``, and colour analysis (S7).

Routes are thin: they build the request context and call ``ImageService``, which plans,
deduplicates, charges, queues and records. Every POST that costs money honours
``Idempotency-Key``. Answers carry ``X-Request-Id``; generations also ``X-Cache`` and
``X-Credits-Charged``.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.idempotency import idempotent
from tollgate.api.params import Body, responds
from tollgate.api.resolver import (
    build_resolver,
    current_caller,
    handle_api_event,
    json_response,
    request_id_of,
)
from tollgate.api.rest import Response
from tollgate.api.schemas.common import exact_json_response
from tollgate.api.schemas.images import ImageBatchOut, ImageJobOut, PaletteOut
from tollgate.clock import SystemClock
from tollgate.credits.amounts import credits_of_units
from tollgate.errors import Forbidden
from tollgate.generation.context import OrgGenerationSettings, RequestContext
from tollgate.generation.requests import ImageGenerationRequest
from tollgate.images.requests import AnalyzeRequest, ImageBatchRequest, ImageJobRequest
from tollgate.lazy import lazy_module
from tollgate.usage.metrics import metrics

if TYPE_CHECKING:  # the image domain loads with services.images(), on first use
    from tollgate.generation import responses
    from tollgate.images.jobs import ImageJob
else:  # only the synchronous generations route answers with these
    responses = lazy_module("tollgate.generation.responses")

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
app = build_resolver()
idempotent_route = idempotent(services.idempotency_store, services.idempotency_ttl)
clock = SystemClock()


def _context() -> RequestContext:
    """The caller, this request's id and the org's generation settings (content policy,
    whether prompts are kept), as the authorizer handed them over."""
    caller = current_caller(app)
    if caller.org_id is None:
        raise Forbidden("The platform admin key makes images for no org; use an org's key")
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


def _job_out(job: ImageJob) -> ImageJobOut:
    images = services.images()
    return ImageJobOut.of(job, images.urls(job), images.url_ttl_seconds, clock.now())


def _charged_headers(credits: int, cache_hit: bool) -> dict[str, str]:
    return {"X-Cache": "HIT" if cache_hit else "MISS", "X-Credits-Charged": str(credits_of_units(credits))}


@app.post("/v1/images", middlewares=[idempotent_route])
@responds(202, ImageJobOut)
def submit_job(body: Annotated[ImageJobRequest, Body()]) -> Response[str]:
    submitted = services.images().submit(_context(), body)
    out = _job_out(submitted.job)
    headers = {
        "Location": out.status_url,
        **_charged_headers(submitted.job.credits_charged, submitted.cache_hit),
    }
    return exact_json_response(202, out, headers=headers)


@app.get("/v1/images/<job_id>")
@responds(200, ImageJobOut)
def get_job(job_id: str) -> Response[str]:
    return exact_json_response(200, _job_out(services.images().job(current_caller(app), job_id)))


@app.post("/v1/images/batch", middlewares=[idempotent_route])
@responds(202, ImageBatchOut)
def submit_batch(body: Annotated[ImageBatchRequest, Body()]) -> Response[str]:
    view = services.images().submit_batch(_context(), body)
    out = ImageBatchOut.of(view.batch, [_job_out(job) for job in view.jobs], view.progress)
    return exact_json_response(202, out, headers={"Location": out.status_url})


@app.get("/v1/images/batches/<batch_id>")
@responds(200, ImageBatchOut)
def get_batch(batch_id: str) -> Response[str]:
    view = services.images().batch(current_caller(app), batch_id)
    out = ImageBatchOut.of(view.batch, [_job_out(job) for job in view.jobs], view.progress)
    return exact_json_response(200, out)


@app.post("/v1/images/generations", middlewares=[idempotent_route])
@responds(200, lambda: responses.ImagesOut)
def generations(body: Annotated[ImageGenerationRequest, Body()]) -> Response[str]:
    images = services.images()
    made = images.generate_now(_context(), body)
    job = made.job
    if body.response_format == "b64_json":
        data = [
            responses.ImageDataOut(
                b64_json=base64.b64encode(raw).decode("ascii"), revised_prompt=asset.revised_prompt
            )
            for raw, asset in zip(made.data, job.assets, strict=True)
        ]
    else:
        data = [
            responses.ImageDataOut(url=url, revised_prompt=asset.revised_prompt)
            for url, asset in zip(images.urls(job), job.assets, strict=True)
        ]
    out = responses.ImagesOut(created=int(job.created_at.timestamp()), data=data)
    headers = {"X-Image-Job-Id": job.job_id, **_charged_headers(job.credits_charged, made.cache_hit)}
    return json_response(200, out, headers=headers)


@app.post("/v1/images/analyze", middlewares=[idempotent_route])
@responds(200, PaletteOut)
def analyze(body: Annotated[AnalyzeRequest, Body()]) -> Response[str]:
    analysis = services.images().analyze(_context(), body)
    out = PaletteOut.of(analysis.palette, dict(analysis.source), analysis.credits_charged)
    return exact_json_response(200, out, headers={"X-Credits-Charged": str(out.credits_charged)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics  # each request's metrics (tollgate.usage.metrics), emitted as it was logged
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
