"""The OpenAI-compatible bodies Tollgate accepts and answers (S6), in front of the providers."""

from __future__ import annotations

import base64
import struct

import pytest
from pydantic import ValidationError

from tollgate.generation.registry import load_models
from tollgate.generation.requests import (
    ChatCompletionRequest,
    EmbeddingsRequest,
    GenerateRequest,
    ImageGenerationRequest,
)
from tollgate.generation.responses import chat_completion, embedding_list, images_b64, model_list
from tollgate.providers.base import ChatMessage, ChatResult, EmbeddingRequest, GeneratedImage, Usage
from tollgate.providers.mock import MockProvider


def test_a_chat_completion_request_becomes_a_provider_request() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "fast-chat",
            "messages": [
                {"role": "developer", "content": "  Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 20,
            "stop": "END",
            "metadata": {"mock": {"delay_ms": 1}},
        }
    )
    request = body.to_provider("gpt-4o-mini", max_tokens=4096)
    assert request.model == "gpt-4o-mini"
    assert request.messages == (ChatMessage("system", "  Be brief."), ChatMessage("user", "Hi\nthere"))
    assert request.max_tokens == 20
    assert request.stop == ("END",)
    assert request.metadata == {"mock": {"delay_ms": 1}}
    assert (
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
        .to_provider("m", max_tokens=99)
        .max_tokens
        == 99
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stream": True}, "stream"),
        ({"n": 2}, "n"),
        ({"tools": []}, "tools"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ],
)
def test_unsupported_or_invalid_chat_fields_are_refused(extra: dict[str, object], field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]} | extra
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate(body)
    assert caught.value.errors()[0]["loc"][0] == field


def test_embeddings_requests_take_a_string_or_strings_not_tokens() -> None:
    assert EmbeddingsRequest.model_validate({"model": "m", "input": "one"}).inputs == ("one",)
    assert EmbeddingsRequest.model_validate({"model": "m", "input": ["a", "b"]}).inputs == ("a", "b")
    with pytest.raises(ValidationError):
        EmbeddingsRequest.model_validate({"model": "m", "input": [1, 2, 3]})
    with pytest.raises(ValidationError):
        EmbeddingsRequest.model_validate({"model": "m", "input": ""})


def test_generate_takes_exactly_one_source() -> None:
    prompt = GenerateRequest.model_validate(
        {"model": "mock/chat", "prompt": "Hi", "params": {"temperature": 0}}
    )
    assert prompt.kind == "completion"
    assert prompt.to_provider("chat").messages == (ChatMessage("user", "Hi"),)
    assert (
        GenerateRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]}).kind
        == "chat"
    )
    template = GenerateRequest.model_validate({"model": "m", "template_id": "tpl_1", "variables": {"x": 1}})
    assert template.to_provider("chat", rendered_prompt="rendered").messages[0].content == "rendered"
    for bad in (
        {},
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        {"prompt": "a", "variables": {}},
    ):
        with pytest.raises(ValidationError):
            GenerateRequest.model_validate({"model": "m"} | bad)


def test_image_requests_parse_the_size() -> None:
    body = ImageGenerationRequest.model_validate({"prompt": "a fox", "size": "512x256", "n": 2})
    request = body.to_provider("image", default_size="1024x1024")
    assert (request.width, request.height, request.n) == (512, 256, 2)
    with pytest.raises(ValidationError):
        ImageGenerationRequest.model_validate({"prompt": "a fox", "size": "big"})


def test_a_chat_completion_answer_has_openais_shape() -> None:
    result = ChatResult("Hi!", "other", Usage(None, None), "gemini", "gemini-1.5-flash")
    body = chat_completion(
        result,
        completion_id="chatcmpl-req_1",
        model="gemini/gemini-1.5-flash",
        created=1700000000,
        input_tokens=5,
        output_tokens=2,
    ).model_dump()
    assert body == {
        "id": "chatcmpl-req_1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gemini/gemini-1.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        "system_fingerprint": None,
    }


def test_base64_embeddings_decode_to_the_same_floats() -> None:
    vector = MockProvider().embed(EmbeddingRequest("embed", ("x",))).vectors[0]
    floats = embedding_list([vector], model="mock/embed", input_tokens=1).model_dump()
    b64 = embedding_list([vector], model="mock/embed", input_tokens=1, encoding_format="base64").model_dump()
    decoded = struct.unpack(f"<{len(vector)}f", base64.b64decode(b64["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)
    assert floats["object"] == "list"
    assert floats["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


def test_the_model_list_has_models_then_aliases() -> None:
    registry = load_models()
    body = model_list(registry.listed(), list(registry.aliases.values()), created=1700000000).model_dump()
    ids = [item["id"] for item in body["data"]]
    assert body["object"] == "list"
    assert "mock/chat" in ids
    assert ids[-len(registry.aliases) :] == list(registry.aliases)
    fast = next(item for item in body["data"] if item["id"] == "fast-chat")
    assert (fast["object"], fast["owned_by"], fast["chain"][-1]) == ("model", "tollgate", "mock/chat")


def test_images_answer_in_b64_json() -> None:
    body = images_b64([GeneratedImage(b"\x89PNG", "png", 1, 1, revised_prompt="r")], created=1).model_dump()
    assert body == {"created": 1, "data": [{"b64_json": "iVBORw==", "url": None, "revised_prompt": "r"}]}
