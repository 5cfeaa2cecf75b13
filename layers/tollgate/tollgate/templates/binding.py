"""Generating from a template (S8): what ``GenerationService.generate`` does with a
``template_id`` (``TemplateBinder``, its ``TemplateResolver``).

Kept apart from ``tollgate.templates.service`` so that the templates function, which never
generates, does not load the generation request path at cold start.
"""

from __future__ import annotations

from msgspec.structs import replace
from pydantic import ValidationError

from tollgate.api.params import field_errors
from tollgate.errors import FieldError, ValidationFailed
from tollgate.generation.context import RequestContext, TemplateBinding
from tollgate.generation.requests import GenerateRequest, SamplingParams
from tollgate.templates.models import TEXT_PARAMS, refuse_another_feature
from tollgate.templates.service import TemplateService

SAMPLING_PARAMS = TEXT_PARAMS - {"model"}


class TemplateBinder:
    """``tollgate.generation.service.TemplateResolver`` over ``TemplateService``."""

    def __init__(self, templates: TemplateService) -> None:
        self._templates = templates

    def bind(self, ctx: RequestContext, body: GenerateRequest) -> tuple[RequestContext, GenerateRequest]:
        """Render the text template ``body`` names with its variables (the current version, or
        ``template_version``); take the template's ``model`` and sampling defaults under the
        request's own; charge its declared price or feature (a request naming another feature
        is refused); bind the context to the version, so that the record and the usage log entry
        name it and its use is counted with the charge."""
        if body.template_id is None:
            return ctx, body
        rendered = self._templates.render(
            ctx.caller, body.template_id, body.variables, version=body.template_version, kind="text"
        )
        model = body.model or rendered.params.get("model")
        if model is None:
            raise ValidationFailed(
                [FieldError("model", "Field required: the template names no model", "missing")]
            )
        refuse_another_feature(rendered.feature, body.feature)
        sampling = {
            **{name: value for name, value in rendered.params.items() if name in SAMPLING_PARAMS},
            **body.params.model_dump(exclude_unset=True),
        }
        try:
            params = SamplingParams.model_validate(sampling)
            prompt_body = GenerateRequest.model_validate(
                {
                    "model": model,
                    "prompt": rendered.prompt,
                    "feature": rendered.feature or body.feature,
                    "params": params,
                    "cache": body.cache,
                    "metadata": body.metadata,
                }
            )
        except ValidationError as exc:
            raise ValidationFailed(field_errors(exc)) from None
        use = rendered.use
        binding = TemplateBinding(
            template_id=rendered.template_id,
            version=rendered.template_version,
            pricing=rendered.pricing,
            stage_use=lambda: self._templates.stage_use(use),
            count_use=lambda: self._templates.count_use(use),
        )
        return replace(ctx, template=binding), prompt_body


__all__ = ["TemplateBinder"]
