"""Stability AI: ``POST /v2beta/stable-image/generate/{sd3|core|ultra}``.

The request is ``multipart/form-data`` (even without a file) with ``Authorization: Bearer``
and ``Accept: application/json``, which makes the answer ``{"image": <base64>,
"finish_reason": "SUCCESS" | "CONTENT_FILTERED", "seed"}``. Errors are ``{"id", "name",
"errors": [...]}``. There is no width/height: the requested size becomes the nearest supported
``aspect_ratio``, and the size reported is read from the image itself. One image per call.

Tollgate model ids: ``core`` and ``ultra`` are endpoints; ``sd3.5-large`` and the other
``sd3*`` ids go to the ``sd3`` endpoint with ``model`` in the form.
"""

from __future__ import annotations

import base64
import binascii
import math

import httpx

from tollgate.providers.base import GeneratedImage, ImageRequest, ImageResult, Kind, ProviderBase, Usage
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError
from tollgate.providers.http import ProviderHttp, WireModel, json_error_message, parse_body, text_snippet
from tollgate.providers.imaging import image_info
from tollgate.providers.keys import ProviderKeySource

NAME = "stability"
DEFAULT_BASE_URL = "https://api.stability.ai"
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
_STYLE_PRESET_ENDPOINTS = frozenset({"core"})


class _ImageResponse(WireModel):
    image: str
    finish_reason: str | None = None
    seed: int | None = None


def stability_error(response: httpx.Response) -> tuple[str, str | None]:
    """(the ``errors`` joined, ``name``) from a Stability error body."""
    body = json_error_message(response)
    if isinstance(body, dict) and ("errors" in body or "name" in body):
        errors = body.get("errors")
        message = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors or "")
        name = body.get("name")
        return message, str(name) if name else None
    return text_snippet(response), None


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported aspect ratio closest to ``width:height`` (compared on a log scale)."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return abs(math.log(int(w) / int(h)) - target)

    return min(ASPECT_RATIOS, key=distance)


def endpoint_for(model: str) -> tuple[str, str | None]:
    """(endpoint, ``model`` form field) for a Tollgate Stability model id."""
    if model in ("core", "ultra"):
        return model, None
    if model.startswith("sd3"):
        return "sd3", model
    raise UpstreamError(
        f"{NAME} has no image endpoint for model {model!r}", provider=NAME, upstream_code="unknown_model"
    )


class StabilityProvider(ProviderBase):
    name = NAME
    kinds: frozenset[Kind] = frozenset({"image"})

    def __init__(self, http: ProviderHttp, keys: ProviderKeySource, base_url: str = DEFAULT_BASE_URL) -> None:
        self._http = http
        self._keys = keys
        self._base_url = base_url.rstrip("/")

    def is_configured(self) -> bool:
        return self._keys.key_for(NAME) is not None

    def generate_images(self, request: ImageRequest) -> ImageResult:
        """One multipart call per image. ``quality`` has no Stability equivalent and is
        ignored; ``style`` is the ``core`` endpoint's ``style_preset``."""
        key = self._keys.key_for(NAME)
        if key is None:
            raise ProviderNotConfigured(NAME)
        endpoint, form_model = endpoint_for(request.model)
        images = []
        for index in range(request.n):
            form: dict[str, str] = {
                "prompt": request.prompt,
                "aspect_ratio": nearest_aspect_ratio(request.width, request.height),
                "output_format": request.output_format,
            }
            if form_model:
                form["model"] = form_model
            if request.negative_prompt:
                form["negative_prompt"] = request.negative_prompt
            if request.seed is not None:
                form["seed"] = str((request.seed + index) % 4_294_967_295)
            if request.style and endpoint in _STYLE_PRESET_ENDPOINTS:
                form["style_preset"] = request.style
            response = self._http.post(
                NAME,
                f"{self._base_url}/v2beta/stable-image/generate/{endpoint}",
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                files={name: (None, value) for name, value in form.items()},
                read_timeout=self._http.timeouts.image,
                error_parser=stability_error,
            )
            answer = parse_body(NAME, response, _ImageResponse)
            try:
                data = base64.b64decode(answer.image, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise UpstreamError(
                    f"{NAME} sent an image that is not base64",
                    provider=NAME,
                    upstream_code="malformed_response",
                ) from exc
            info = image_info(data)
            images.append(
                GeneratedImage(
                    data=data,
                    format=info.format if info else request.output_format,
                    width=info.width if info else request.width,
                    height=info.height if info else request.height,
                    seed=answer.seed,
                    finish_reason="content_filter" if answer.finish_reason == "CONTENT_FILTERED" else "stop",
                )
            )
        return ImageResult(images=tuple(images), usage=Usage(), provider=NAME, model=request.model)
