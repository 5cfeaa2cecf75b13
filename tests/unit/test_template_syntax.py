"""The template body language: one scan into literal and placeholder segments, malformed
placeholders refused with their position, values inserted as plain text in one pass."""

from __future__ import annotations

import random

import pytest

from tollgate.templates.syntax import Literal, Placeholder, TemplateSyntaxError, parse_body


def test_a_body_is_literal_text_and_placeholders_with_optional_spaces() -> None:
    # When a body with placeholders written three ways is parsed
    parsed = parse_body("Hi {{name}}, {{ name }} and {{\tplace\t}}!")
    # Then it is literal text and placeholders, in order, each name listed once
    assert parsed.segments == (
        Literal("Hi "),
        Placeholder("name", 3),
        Literal(", "),
        Placeholder("name", 13),
        Literal(" and "),
        Placeholder("place", 28),
        Literal("!"),
    )
    assert parsed.names == ("name", "place")


def test_an_escaped_opening_and_a_lone_closing_are_literal_text() -> None:
    parsed = parse_body(r"Literal \{{ braces }} and }} then {{x}}")
    assert parsed.names == ("x",)
    assert parsed.render({"x": "X"}) == "Literal {{ braces }} and }} then X"


def test_a_body_without_placeholders_renders_as_it_is() -> None:
    text = "No placeholders here: { single } and a backslash \\ alone.\n"
    assert parse_body(text).render({}) == text


@pytest.mark.parametrize(
    ("body", "offset", "line", "column", "says"),
    [
        ("Hello {{ name", 6, 1, 7, "unclosed"),
        ("{{ 1st }}", 0, 1, 1, "malformed"),
        ("ok\nthen {{ two words }}", 8, 2, 6, "malformed"),
        ("{{ name|upper }}", 0, 1, 1, "malformed"),
        ("{{}}", 0, 1, 1, "malformed"),
        ("{{{name}}}", 0, 1, 1, "malformed"),
        ("a {{ outer {{ inner }} }}", 2, 1, 3, "malformed"),
        ("{{ naïve }}", 0, 1, 1, "malformed"),
        ("{{ " + "n" * 65 + " }}", 0, 1, 1, "malformed"),
    ],
)
def test_a_malformed_placeholder_is_refused_with_its_position(
    body: str, offset: int, line: int, column: int, says: str
) -> None:
    # When a body with a malformed placeholder is parsed
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_body(body)
    # Then the problem names where it is
    (problem,) = caught.value.problems[:1]
    assert (problem.offset, problem.line, problem.column) == (offset, line, column)
    assert says in problem.message
    assert f"line {line}, column {column}" in str(caught.value)


def test_every_malformed_placeholder_is_reported_at_once() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_body("{{ a b }} fine {{ ok }} {{ 2 }}\n{{ unclosed")
    assert [(p.line, p.column) for p in caught.value.problems] == [(1, 1), (1, 25), (2, 1)]


@pytest.mark.parametrize(
    "value",
    [
        "{{other}}",
        "{{ other }}",
        "{{",
        "}}",
        "\\{{other}}",
        "{{{{}}}}",
        "{{ name }}",
        "emoji 🚀 and ünïcödé, עברית, 中文, e\u0301",
        "line one\nline two\r\n\ttabbed",
        "",
    ],
)
def test_a_value_is_inserted_as_plain_text_and_never_read_as_syntax(value: str) -> None:
    # Given a body with two placeholders, the first value looking like the second placeholder
    parsed = parse_body("A: {{ name }} / B: {{ other }}.")
    # When it renders
    rendered = parsed.render({"name": value, "other": "OTHER"})
    # Then the first value is there exactly as given, and the second placeholder once, where it was
    assert rendered == f"A: {value} / B: OTHER."


def test_rendering_matches_literal_concatenation_for_random_bodies_and_values() -> None:
    # Given bodies built from random literal pieces (braces, backslashes, unicode included, but
    # never forming "{{" nor escaping one) and placeholders, and random values full of syntax
    rng = random.Random(20250310)
    pieces = ["a", " ", "}", "}}", "{", "\\", "é", "🚀", "\n", "x{ y", "text"]
    names = ["alpha", "beta", "_g1"]
    for _ in range(400):
        body_parts: list[str] = []
        expected_parts: list[tuple[str, str]] = []
        for _segment in range(rng.randint(0, 8)):
            if rng.random() < 0.4:
                name = rng.choice(names)
                spaces = rng.choice(["", " ", "  ", "\t"])
                body_parts.append(f"{{{{{spaces}{name}{spaces}}}}}")
                expected_parts.append(("var", name))
            else:
                text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
                # keep the literal free of "{{", even across the join with a neighbour, and
                # of a final backslash (which would escape a placeholder after it)
                text = text.replace("{", "(") + ("." if text.endswith("\\") else "")
                body_parts.append(text)
                expected_parts.append(("text", text))
        values = {
            name: "".join(
                rng.choice(["{{", "}}", "{{beta}}", "\\{{", "x", "ü", " "]) for _ in range(rng.randint(0, 5))
            )
            for name in names
        }
        # When the body is parsed and rendered
        rendered = parse_body("".join(body_parts)).render(values)
        # Then it is exactly the literal text with each value written in place, in one pass
        assert rendered == "".join(values[v] if kind == "var" else v for kind, v in expected_parts)


def test_a_missing_value_is_a_programming_error_not_a_silent_gap() -> None:
    with pytest.raises(KeyError):
        parse_body("{{ a }}").render({})
