"""The deterministic ``mock`` provider: answers, vectors, real PNGs, and its failure knobs."""

from __future__ import annotations

import math
import struct
import zlib

import pytest

from tollgate.errors import ValidationFailed
from tollgate.providers.base import ChatMessage, ChatRequest, EmbeddingRequest, ImageRequest
from tollgate.providers.errors import UpstreamError, UpstreamTimeout
from tollgate.providers.imaging import PNG_SIGNATURE, encode_png, image_info
from tollgate.providers.mock import MockProvider, chat_input_tokens, mock_embedding, mock_png
from tollgate.tokens import count_tokens

QUESTION = (ChatMessage("system", "You are helpful."), ChatMessage("user", "What is the capital of France?"))


def _chat(**kwargs: object) -> ChatRequest:
    return ChatRequest(model="chat", messages=QUESTION, **kwargs)  # type: ignore[arg-type]


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of every chunk, checking the CRC of each."""
    assert data[:8] == PNG_SIGNATURE
    chunks = []
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body, crc))
        at += 12 + length
    assert at == len(data)
    return chunks


# -- chat ------------------------------------------------------------------------------------------


def test_the_same_chat_gets_the_same_answer() -> None:
    provider = MockProvider()
    first, second = provider.chat(_chat()), provider.chat(_chat())
    assert first == second
    assert first.text.startswith("Mock answer ")
    assert '"What is the capital of France?"' in first.text
    assert first.finish_reason == "stop"
    assert (first.provider, first.model) == ("mock", "chat")


def test_another_prompt_or_seed_gets_another_answer() -> None:
    provider = MockProvider()
    base = provider.chat(_chat()).text
    other = provider.chat(ChatRequest(model="chat", messages=(ChatMessage("user", "And of Spain?"),))).text
    seeded = provider.chat(_chat(seed=1)).text
    assert len({base, other, seeded}) == 3


def test_sampling_knobs_do_not_change_a_deterministic_answer() -> None:
    provider = MockProvider()
    assert provider.chat(_chat(temperature=1.5)).text == provider.chat(_chat(temperature=0)).text


def test_usage_is_counted_with_tiktoken() -> None:
    result = MockProvider().chat(_chat())
    assert result.usage.output_tokens == count_tokens(result.text, "cl100k_base")
    expected_input = 3 + sum(
        3 + count_tokens(m.role, "cl100k_base") + count_tokens(m.content, "cl100k_base") for m in QUESTION
    )
    assert result.usage.input_tokens == chat_input_tokens(QUESTION) == expected_input


def test_max_tokens_cuts_the_answer() -> None:
    result = MockProvider().chat(_chat(max_tokens=3))
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 3
    assert MockProvider().chat(_chat()).text.startswith(result.text)


def test_a_stop_sequence_cuts_the_answer() -> None:
    result = MockProvider().chat(_chat(stop=("capital",)))
    assert result.finish_reason == "stop"
    assert "capital" not in result.text


# -- embeddings ------------------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors() -> None:
    provider = MockProvider()
    result = provider.embed(EmbeddingRequest(model="embed", inputs=("a cat sat", "a cat sat", "")))
    first, again, empty = result.vectors
    assert first == again
    assert len(first) == 256
    for vector in (first, empty):
        assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-9)
    assert result.usage.input_tokens == 2 * count_tokens("a cat sat", "cl100k_base")


def test_embedding_dimensions_are_configurable() -> None:
    assert (
        len(MockProvider(embedding_dimensions=64).embed(EmbeddingRequest("embed", ("x",))).vectors[0]) == 64
    )
    assert len(MockProvider().embed(EmbeddingRequest("embed", ("x",), dimensions=32)).vectors[0]) == 32


def test_texts_sharing_words_are_closer() -> None:
    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(mock_embedding(a), mock_embedding(b), strict=True))

    assert cosine("the cat sat on the mat", "the cat sat on a mat") > cosine(
        "the cat sat on the mat", "stock prices fell"
    )


# -- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (64, 32), (256, 256), (333, 97)])
def test_images_are_valid_pngs_of_exactly_the_requested_size(width: int, height: int) -> None:
    # When
    result = MockProvider().generate_images(
        ImageRequest(model="image", prompt="a red fox", width=width, height=height)
    )
    (image,) = result.images
    # Then: the signature, IHDR first with the size, 8-bit RGB, IEND last, every CRC right
    chunks = _png_chunks(image.data)
    kinds = [kind for kind, _, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert b"IDAT" in kinds
    w, h, depth, color, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (w, h) == (width, height)
    assert (depth, color, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    # And the pixel data is exactly one filter byte plus 3 bytes a pixel per row
    raw = zlib.decompress(b"".join(body for kind, body, _ in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    assert (image.format, image.width, image.height) == ("png", width, height)
    assert image_info(image.data) is not None


def test_images_are_deterministic_and_differ_by_prompt_and_index() -> None:
    provider = MockProvider()
    one = provider.generate_images(ImageRequest(model="image", prompt="a fox", width=64, height=64, n=2))
    again = provider.generate_images(ImageRequest(model="image", prompt="a fox", width=64, height=64, n=2))
    other = provider.generate_images(ImageRequest(model="image", prompt="a dog", width=64, height=64))
    assert one == again
    assert one.images[0].data != one.images[1].data
    assert other.images[0].data != one.images[0].data


def test_the_png_encoder_refuses_wrong_rows() -> None:
    with pytest.raises(ValueError, match="expected 6"):
        encode_png(2, 1, [b"\x00" * 5])
    with pytest.raises(ValueError, match="height"):
        encode_png(1, 2, [b"\x00" * 3])


def test_mock_png_is_a_function_of_the_prompt() -> None:
    assert mock_png("x", 16, 16) == mock_png("x", 16, 16) != mock_png("y", 16, 16)


# -- knobs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail", "status", "retryable"),
    [("error", 500, True), ("rate_limit", 429, True), ("invalid", 400, False)],
)
def test_it_fails_when_told(fail: str, status: int, retryable: bool) -> None:
    with pytest.raises(UpstreamError) as caught:
        MockProvider().chat(_chat(metadata={"mock": {"fail": fail}}))
    assert caught.value.status == 502
    assert (caught.value.upstream_status, caught.value.retryable) == (status, retryable)


def test_it_times_out_when_told() -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        MockProvider().embed(EmbeddingRequest("embed", ("x",), metadata={"mock": {"fail": "timeout"}}))
    assert caught.value.status == 504


def test_it_is_slow_when_told_through_the_injected_sleep() -> None:
    sleeps: list[float] = []
    provider = MockProvider(sleep=sleeps.append)
    provider.generate_images(
        ImageRequest("image", "x", width=4, height=4, metadata={"mock": '{"delay_ms": 50}'})
    )
    assert sleeps == [0.05]


def test_a_bad_knob_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as caught:
        MockProvider().chat(_chat(metadata={"mock": {"fail": "explode", "delay_ms": 99_999}}))
    assert caught.value.errors[0].field == "metadata.mock"


def test_a_disabled_mock_is_not_configured() -> None:
    assert MockProvider().is_configured()
    assert not MockProvider(enabled=False).is_configured()
