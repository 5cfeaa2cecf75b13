"""The template body language: literal text with ``{{ name }}`` placeholders, and nothing else.

A body is scanned once into segments, literal text and placeholders; rendering writes each
placeholder's value as plain text in one pass, so a value is never scanned again: a value
holding ``{{other}}``, ``{{`` or ``}}`` is inserted exactly as it is and can never introduce a
placeholder (S8).

The grammar, all of it:

- ``{{ name }}`` is a placeholder; spaces (and tabs) inside the braces are optional; a name is a
  letter or ``_`` then letters, digits or ``_`` (at most 64 characters, ASCII).
- ``\\{{`` is a literal ``{{`` (the backslash is dropped). Every other backslash is literal.
- ``}}`` outside a placeholder is literal text.
- Anything else between ``{{`` and the next ``}}`` (a bad name, a filter, a nested ``{{``), or a
  ``{{`` that is never closed, is malformed: the body is refused when the template is saved,
  with the position (offset, line and column) of the offending ``{{``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from msgspec import Struct

OPEN = "{{"
CLOSE = "}}"
ESCAPE = "\\"
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_NAME = re.compile(rf"^[ \t]*({NAME_PATTERN})[ \t]*$")


class Literal(Struct, frozen=True):
    text: str


class Placeholder(Struct, frozen=True):
    name: str
    offset: int
    """Where its ``{{`` starts in the body (0-based, in characters)."""


Segment = Literal | Placeholder


class SyntaxProblem(Struct, frozen=True):
    """One malformed placeholder: what is wrong, and where (offset, 1-based line and column)."""

    message: str
    offset: int
    line: int
    column: int

    def describe(self) -> str:
        return f"{self.message} at line {self.line}, column {self.column} (offset {self.offset})"


class TemplateSyntaxError(ValueError):
    """A body with malformed placeholders; ``problems`` lists each, in order."""

    def __init__(self, problems: list[SyntaxProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(problem.describe() for problem in problems))


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class ParsedBody(Struct, frozen=True):
    """A body as segments, ready to render."""

    segments: tuple[Segment, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The placeholder names, first appearance first, each once."""
        return tuple(dict.fromkeys(s.name for s in self.segments if isinstance(s, Placeholder)))

    def render(self, values: Mapping[str, str]) -> str:
        """The body with each placeholder replaced by its value, as plain text, in one pass.

        ``values`` must hold every placeholder's name (``KeyError`` otherwise): which values are
        allowed is the variables' business (``tollgate.templates.variables``)."""
        return "".join(s.text if isinstance(s, Literal) else values[s.name] for s in self.segments)


def parse_body(text: str) -> ParsedBody:
    """Scan ``text`` once into literal and placeholder segments.

    Raises ``TemplateSyntaxError`` naming every malformed placeholder with its position."""
    segments: list[Segment] = []
    problems: list[SyntaxProblem] = []
    literal: list[str] = []
    cursor = 0
    while True:
        start = text.find(OPEN, cursor)
        if start == -1:
            literal.append(text[cursor:])
            break
        if start > cursor and text[start - 1] == ESCAPE:
            # "\{{" is a literal "{{": keep what came before the backslash, then the braces.
            literal.append(text[cursor : start - 1])
            literal.append(OPEN)
            cursor = start + len(OPEN)
            continue
        literal.append(text[cursor:start])
        end = text.find(CLOSE, start + len(OPEN))
        if end == -1:
            line, column = _position(text, start)
            problems.append(SyntaxProblem("unclosed placeholder: '{{' without '}}'", start, line, column))
            break
        inner = text[start + len(OPEN) : end]
        match = _NAME.match(inner)
        if match is None:
            line, column = _position(text, start)
            shown = inner if len(inner) <= 40 else inner[:37] + "..."
            problems.append(
                SyntaxProblem(
                    f"malformed placeholder {{{{{shown}}}}}: expected {{{{ name }}}} with a name of "
                    "letters, digits and _",
                    start,
                    line,
                    column,
                )
            )
        else:
            if literal:
                segments.append(Literal("".join(literal)))
                literal = []
            segments.append(Placeholder(match.group(1), start))
        cursor = end + len(CLOSE)
    if problems:
        raise TemplateSyntaxError(problems)
    tail = "".join(literal)
    if tail:
        segments.append(Literal(tail))
    return ParsedBody(tuple(segments))


__all__ = [
    "Literal",
    "ParsedBody",
    "Placeholder",
    "Segment",
    "SyntaxProblem",
    "TemplateSyntaxError",
    "parse_body",
]
