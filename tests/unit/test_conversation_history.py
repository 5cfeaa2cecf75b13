"""Trimming a conversation's history to the model's context window: the system message always,
the latest whole turns that fit, then the new message, counted as the provider counts a chat."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollgate.conversations.history import fit_history, message_tokens
from tollgate.conversations.models import Message
from tollgate.errors import ValidationFailed
from tollgate.generation.registry import ModelSpec, load_models
from tollgate.generation.security import ContentLimits
from tollgate.providers.mock import chat_input_tokens
from tollgate.tokens import count_tokens

NOW = datetime(2025, 3, 10, tzinfo=UTC)
LIMITS = ContentLimits()


def model(context_window: int, encoding: str = "cl100k_base", name: str = "mock/chat") -> ModelSpec:
    return ModelSpec(
        name=name,
        provider=name.split("/")[0],
        kind="chat",
        context_window=context_window,
        max_output_tokens=64,
        encoding=encoding,  # type: ignore[arg-type]
    )


def history(turns: int, words: int = 12) -> list[Message]:
    found: list[Message] = []
    for turn in range(turns):
        for role, text in (
            ("user", f"question {turn} " + "word " * words),
            ("assistant", f"answer {turn} " + "reply " * words),
        ):
            found.append(
                Message(len(found) + 1, role, text, count_tokens(text), "cl100k_base", f"r{turn}", NOW)  # type: ignore[arg-type]
            )
    return found


def test_everything_is_sent_when_it_fits() -> None:
    past = history(3)
    window = fit_history("Be brief.", past, "And now?", [model(128_000)], 100, LIMITS)
    assert [m.role for m in window.messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert [m.content for m in window.messages[1:-1]] == [m.content for m in past]
    assert window.messages[-1].content == "And now?"
    assert window.kept_messages == 6


def test_the_oldest_whole_turns_are_dropped_to_fit_and_the_system_message_stays() -> None:
    # Given 20 turns and a model of 512 tokens, 64 of them for the answer
    past = history(20)
    spec = model(512)
    # When the history is fitted
    window = fit_history("Be brief.", past, "Last question?", [spec], 64, LIMITS)
    sent = window.messages
    # Then the system message comes first, then the latest turns (whole), then the new message
    assert sent[0].role == "system"
    assert sent[1].role == "user"
    assert sent[-2].role == "assistant"
    assert sent[-1].content == "Last question?"
    kept = past[len(past) - window.kept_messages :]
    assert [m.content for m in sent[1:-1]] == [m.content for m in kept]
    assert window.kept_messages % 2 == 0
    assert 0 < window.kept_messages < len(past)
    # And the prompt is exactly what the provider counts, within the window less the answer...
    counted = chat_input_tokens(sent)
    assert window.prompt_tokens["cl100k_base"] == counted
    assert counted + 64 <= spec.context_window
    # ...and one more turn would not have fitted
    one_more = past[len(past) - window.kept_messages - 2 : len(past) - window.kept_messages]
    extra = sum(message_tokens(m.role, m.content, "cl100k_base") for m in one_more)
    assert counted + extra + 64 > spec.context_window


def test_every_model_of_the_chain_must_fit_whatever_its_encoding() -> None:
    past = history(20)
    big, small = model(128_000), model(400, "o200k_base", "openai/gpt-4o-mini")
    window = fit_history(None, past, "Now?", [big, small], 64, LIMITS)
    assert window.prompt_tokens["o200k_base"] + 64 <= 400
    assert window.prompt_tokens["cl100k_base"] == chat_input_tokens(window.messages)
    assert window.kept_messages < len(past)


def test_the_message_count_limit_trims_too() -> None:
    window = fit_history(
        None, history(20, words=1), "Now?", [model(128_000)], 64, ContentLimits(max_messages=7)
    )
    assert len(window.messages) <= 7
    assert window.kept_messages == 6


def test_a_new_message_that_cannot_fit_even_alone_is_refused_on_content() -> None:
    with pytest.raises(ValidationFailed) as caught:
        fit_history("System.", [], "word " * 600, [model(512)], 64, LIMITS)
    assert caught.value.errors[0].field == "content"
    assert "512 tokens" in caught.value.errors[0].message


def test_an_output_budget_as_large_as_the_window_is_refused_on_max_tokens() -> None:
    with pytest.raises(ValidationFailed) as caught:
        fit_history(None, [], "Hi", [model(512)], 512, LIMITS)
    assert caught.value.errors[0].field == "params.max_tokens"


def test_the_shipped_small_mock_model_has_a_small_window() -> None:
    spec = load_models().get("mock/chat-small")
    assert spec.context_window == 512
    assert spec.max_output_tokens == 64
