"""The Stability AI adapter against the v2beta Stable Image API's real shapes (fake transport)."""

from __future__ import annotations

import base64
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest

from tests.unit.test_providers_fakes import KEYS, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.providers.base import ImageRequest
from tollgate.providers.errors import UpstreamError, UpstreamTimeout
from tollgate.providers.mock import mock_png
from tollgate.providers.stability import StabilityProvider, nearest_aspect_ratio

PNG = mock_png("a red fox", 48, 27)
IMAGE_OK = {"image": base64.b64encode(PNG).decode(), "finish_reason": "SUCCESS", "seed": 1050625087}
BAD_REQUEST = {
    "id": "d5c8b5d9c1d1d0f0e8f3c5f1c2b1a0e9",
    "name": "bad_request",
    "errors": ["prompt: cannot be empty"],
}
RATE_LIMITED = {
    "id": "a1b2c3",
    "name": "rate_limit_exceeded",
    "errors": ["You have exceeded the rate limit of 150 requests within a 10 second period"],
}


def _form(request: httpx.Request) -> dict[str, str]:
    """The multipart form fields of a request, parsed by the standard library."""
    raw = b"Content-Type: " + request.headers["Content-Type"].encode() + b"\r\n\r\n" + request.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_content()
        for part in message.iter_parts()
    }


def _provider(transport: ScriptedTransport, sleeps: list[float]) -> StabilityProvider:
    return StabilityProvider(make_http(transport, sleeps), KEYS)


def test_sd3_is_a_multipart_request_with_the_model_in_the_form() -> None:
    transport = ScriptedTransport(json_response(200, IMAGE_OK))
    result = _provider(transport, []).generate_images(
        ImageRequest(
            model="sd3-large", prompt="a red fox", width=1792, height=1024, negative_prompt="blur", seed=42
        )
    )
    sent = transport.requests[0]
    assert str(sent.url) == "https://api.stability.ai/v2beta/stable-image/generate/sd3"
    assert sent.headers["Authorization"] == "Bearer sk-test-stability"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert _form(sent) == {
        "prompt": "a red fox",
        "aspect_ratio": "16:9",
        "output_format": "png",
        "model": "sd3-large",
        "negative_prompt": "blur",
        "seed": "42",
    }
    (image,) = result.images
    assert image.data == PNG
    assert (image.format, image.width, image.height, image.seed) == ("png", 48, 27, 1050625087)
    assert image.finish_reason == "stop"


def test_core_takes_the_style_preset_and_n_is_one_call_per_image() -> None:
    transport = ScriptedTransport(
        json_response(200, IMAGE_OK), json_response(200, IMAGE_OK | {"finish_reason": "CONTENT_FILTERED"})
    )
    result = _provider(transport, []).generate_images(
        ImageRequest(model="core", prompt="a fox", n=2, style="anime")
    )
    assert str(transport.requests[0].url).endswith("/v2beta/stable-image/generate/core")
    assert _form(transport.requests[0])["style_preset"] == "anime"
    assert "model" not in _form(transport.requests[0])
    assert [image.finish_reason for image in result.images] == ["stop", "content_filter"]


def test_an_error_body_is_a_provider_error_and_a_400_is_not_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(400, BAD_REQUEST))
    with pytest.raises(UpstreamError) as caught:
        _provider(transport, sleeps).generate_images(ImageRequest(model="sd3-medium", prompt="x"))
    assert transport.calls == 1
    assert sleeps == []
    assert "prompt: cannot be empty" in caught.value.detail
    assert caught.value.upstream_code == "bad_request"


def test_a_429_with_retry_after_is_retried() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(429, RATE_LIMITED, {"retry-after": "1"}), json_response(200, IMAGE_OK)
    )
    result = _provider(transport, sleeps).generate_images(ImageRequest(model="ultra", prompt="x"))
    assert len(result.images) == 1
    assert sleeps == [1.0]
    assert _form(transport.requests[0]) == _form(transport.requests[1])


def test_a_timeout_is_a_provider_timeout() -> None:
    transport = ScriptedTransport(timeout_step, timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout):
        _provider(transport, []).generate_images(ImageRequest(model="core", prompt="x"))


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1024, 1024), "1:1"),
        ((1792, 1024), "16:9"),
        ((1024, 1792), "9:16"),
        ((1200, 800), "3:2"),
        ((2520, 1080), "21:9"),
    ],
)
def test_sizes_become_the_nearest_aspect_ratio(size: tuple[int, int], ratio: str) -> None:
    assert nearest_aspect_ratio(*size) == ratio
