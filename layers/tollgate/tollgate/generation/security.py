"""Content security, before any provider sees a prompt (S6). Pure: no I/O.

Three checks:

- size limits: too many messages or characters is ``413 payload_too_large``;
- a prompt-injection / suspicious-prompt detector: weighted patterns (instruction override,
  system-prompt exfiltration, role-play jailbreaks, forged chat-template markers) and
  heuristics (invisible characters, long encoded blobs), combined into a score in [0, 1]
  with the reasons; a message scores above the policy's threshold is a finding;
- PII and secrets: e-mail addresses, phone numbers (E.164 and common national formats),
  payment card numbers (Luhn-checked, known issuer prefixes), and secrets (AWS access keys,
  OpenAI/Anthropic-style ``sk-`` keys, Tollgate ``tg_`` keys, GitHub tokens, Google API keys,
  Slack and Stripe tokens, JWTs, private key blocks, high-entropy ``api_key=...`` values).

Each finding type has a per-org action: ``block`` (``422 content_blocked`` naming the finding
types, never the matched text), ``redact`` (the text becomes ``[REDACTED:<type>]`` and the
provider gets the redacted messages), ``flag`` (recorded on the request) or ``allow``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from msgspec import Struct
from msgspec.structs import replace
from pydantic import BaseModel, ConfigDict, Field

from tollgate.errors import ContentBlocked, PayloadTooLarge
from tollgate.providers.base import ChatMessage, Role
from tollgate.settings import Settings

FindingType = Literal["prompt_injection", "secret", "card_number", "email", "phone"]
Action = Literal["block", "redact", "flag", "allow"]

# When spans overlap, the finding earlier in this order wins (a phone number inside a card
# number, an e-mail inside a private key block, a generic secret inside a tg_ key).
_PRIORITY: dict[FindingType, int] = {
    "secret": 0,
    "card_number": 1,
    "email": 2,
    "phone": 3,
    "prompt_injection": 4,
}


class ContentLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_prompt_chars: int = Field(default=200_000, ge=1)
    max_messages: int = Field(default=256, ge=1)

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentLimits:
        return cls(max_prompt_chars=settings.prompt_max_chars, max_messages=settings.prompt_max_messages)


class ContentPolicy(BaseModel):
    """An org's policy: one action per finding type, and the injection score threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    prompt_injection: Action = "block"
    secret: Action = "redact"  # noqa: S105 (an action, not a password)
    card_number: Action = "redact"
    email: Action = "flag"
    phone: Action = "flag"
    injection_threshold: float = Field(default=0.5, gt=0, le=1)
    injection_roles: tuple[Role, ...] = ("user",)
    """Roles whose messages are checked for injection (an org's own system prompt is not)."""

    def action_for(self, finding_type: FindingType) -> Action:
        action: Action = getattr(self, finding_type)
        return action


class Finding(Struct, frozen=True):
    """Something found in one text. Holds where it is, never what it is."""

    type: FindingType
    kind: str
    """The detail: ``aws_access_key``, ``visa``, ``e164``, ``instruction_override``..."""
    message_index: int
    start: int
    end: int
    action: Action = "flag"
    score: float | None = None
    reasons: tuple[str, ...] = ()

    def as_record(self) -> dict[str, Any]:
        """The finding as stored on a request record (no matched text)."""
        record: dict[str, Any] = {
            "type": self.type,
            "kind": self.kind,
            "message_index": self.message_index,
            "action": self.action,
        }
        if self.score is not None:
            record["score"] = round(self.score, 3)
            record["reasons"] = list(self.reasons)
        return record


class ScanResult(Struct, frozen=True):
    """The messages the provider may see (redacted where the policy says) and the findings."""

    messages: tuple[ChatMessage, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def redacted(self) -> bool:
        return any(f.action == "redact" for f in self.findings)

    @property
    def flagged(self) -> bool:
        return any(f.action == "flag" for f in self.findings)

    @property
    def finding_types(self) -> tuple[FindingType, ...]:
        return tuple(sorted({f.type for f in self.findings}, key=lambda t: _PRIORITY[t]))


class TextScanResult(Struct, frozen=True):
    texts: tuple[str, ...]
    findings: tuple[Finding, ...] = ()


# -- prompt injection ------------------------------------------------------------------------------


class InjectionVerdict(Struct, frozen=True):
    score: float
    reasons: tuple[str, ...]
    """Strongest first."""
    spans: tuple[tuple[int, int], ...] = ()


class LazyPattern:
    """A regular expression compiled the first time it is used. The detectors hold some forty
    patterns whose compilation is a large part of a cold start; a function that never scans
    (listing records, say) never compiles them."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str, flags: int | re.RegexFlag = 0) -> None:
        self.pattern = pattern
        self.flags = int(flags)
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled.search(text)

    def match(self, text: str) -> re.Match[str] | None:
        return self.compiled.match(text)

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self.compiled.finditer(text)

    def findall(self, text: str) -> list[Any]:
        return self.compiled.findall(text)

    def sub(self, replacement: str, text: str) -> str:
        return self.compiled.sub(replacement, text)


_pattern = LazyPattern

_I = re.IGNORECASE
_OVERRIDE_VERBS = r"(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)"
_OVERRIDE_TARGETS = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints|"
    r"context|messages?|commands?|programming|polic(?:y|ies)|orders)"
)
_OVERRIDE = _pattern(
    rf"\b{_OVERRIDE_VERBS}\s+(?P<quant>(?:(?:all|any|every|each|the|your|my|these|those|of|its)\s+){{0,4}})"
    rf"(?:previous|prior|above|earlier|preceding|original|initial|existing|system|developer|safety|current)"
    rf"\s+{_OVERRIDE_TARGETS}\b",
    _I,
)
_STRONG_QUANT = _pattern(r"\b(?:all|any|every|your|its)\b", _I)
_FOLLOW_UP = _pattern(
    r"^[\s,.;:-]*(?:and|instead|then|now|from now on)\b"
    r"|^[\s,.;:-]*(?:you are|you're|act as|say|print|tell|reveal)\b",
    _I,
)

# (reason, weight, pattern)
_RULES: tuple[tuple[str, float, LazyPattern], ...] = (
    (
        "instruction_override",
        0.8,
        _pattern(
            rf"\b{_OVERRIDE_VERBS}\s+(?:everything|all|anything)\s+(?:(?:that\s+)?(?:above|before|prior|previously)|"
            r"(?:you(?:'ve| have)?\s+(?:been\s+)?(?:told|said|were told|was told)))",
            _I,
        ),
    ),
    (
        "instruction_override",
        0.7,
        _pattern(r"\bignore\s+the\s+above\b(?=[\s,.:;-]+(?:and|instead|then|now)\b)", _I),
    ),
    (
        "system_prompt_exfiltration",
        0.75,
        _pattern(
            r"\b(?:reveal|show|print|display|repeat|output|leak|dump|tell me|give me|share|disclose|"
            r"write out|spell out|recite|paste)\b[^.?!\n]{0,40}?\b(?:your|the)\s+"
            r"(?:(?:full|entire|exact|original|initial|hidden|secret|complete|confidential)\s+)*"
            r"(?:system\s+(?:prompt|message|instructions)|initial\s+(?:instructions|prompt)|"
            r"hidden\s+(?:instructions|prompt)|developer\s+(?:message|prompt|instructions)|pre-?prompt|"
            r"instructions\s+(?:above|verbatim|you\s+were\s+given))",
            _I,
        ),
    ),
    (
        "system_prompt_exfiltration",
        0.55,
        _pattern(
            r"\bwhat\s+(?:is|are|was|were)\s+your\s+(?:(?:exact|full|original|initial|hidden)\s+)*"
            r"(?:system\s+prompt|system\s+message|initial\s+instructions|hidden\s+instructions|instructions)\b",
            _I,
        ),
    ),
    (
        "system_prompt_exfiltration",
        0.6,
        _pattern(
            r"\b(?:repeat|print|output|copy)\s+(?:all\s+|the\s+)*(?:text|words|everything|content)\s+"
            r"(?:above|before)\s+(?:this|here|the\s+first)",
            _I,
        ),
    ),
    ("roleplay_jailbreak", 0.8, _pattern(r"\bdo\s+anything\s+now\b|\b(?-i:DAN|STAN|DUDE)\s+mode\b", _I)),
    ("roleplay_jailbreak", 0.8, _pattern(r"\byou\s+are\s+(?:now\s+)?(?-i:DAN)\b", _I)),
    (
        "roleplay_jailbreak",
        0.6,
        _pattern(r"\b(?:jailbreak|jailbroken|god|unrestricted|unfiltered|evil|uncensored)\s+mode\b", _I),
    ),
    (
        "roleplay_jailbreak",
        0.6,
        _pattern(r"\bwith\s+developer\s+mode\s+enabled\b|\bdeveloper\s+mode\s+output\b", _I),
    ),
    (
        "roleplay_jailbreak",
        0.75,
        _pattern(
            r"\b(?:you\s+are|you're|act\s+as|pretend\s+(?:to\s+be|you\s+are|you're)|role-?play\s+as|"
            r"imagine\s+you\s+are)\b[^.\n]{0,60}?\b(?:no|without|free\s+(?:of|from)|not\s+bound\s+by|"
            r"unbound\s+by|ignoring)\s+(?:(?:any|all|your|the)\s+)?(?:restrictions|limits|limitations|rules|filters|"
            r"guidelines|ethics|morals|morality|censorship|content\s+polic(?:y|ies)|safety)\b",
            _I,
        ),
    ),
    (
        "roleplay_jailbreak",
        0.5,
        _pattern(r"\b(?:no\s+longer|not|never)\s+(?:bound|restricted|limited|constrained)\s+by\b", _I),
    ),
    ("roleplay_jailbreak", 0.35, _pattern(r"\b(?:jailbreak|jailbroken)\b", _I)),
    ("roleplay_jailbreak", 0.3, _pattern(r"\bfrom\s+now\s+on,?\s+you\s+(?:will|are|must|shall)\b", _I)),
    ("roleplay_jailbreak", 0.25, _pattern(r"\bstay\s+in\s+character\b", _I)),
    (
        "guardrail_bypass",
        0.6,
        _pattern(
            r"\b(?:bypass|disable|circumvent|evade|turn\s+off)\s+(?:your|the|all|any)?\s*"
            r"(?:safety|content|security|ethical)?\s*(?:filters?|guardrails|restrictions|polic(?:y|ies)|"
            r"moderation|safeguards)\b",
            _I,
        ),
    ),
    (
        "forged_role_marker",
        0.6,
        _pattern(
            r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|endoftext\|>|<\|start_header_id\|>|"
            r"\[/?INST\]|<<SYS>>|<</SYS>>",
            _I,
        ),
    ),
    ("forged_role_marker", 0.35, _pattern(r"^[ \t]*#{0,3}[ \t]*(?:system|assistant)[ \t]*:", _I | re.M)),
    (
        "forged_role_marker",
        0.45,
        _pattern(
            r"\bnew\s+(?:system\s+)?instructions?\s*:|\bend\s+of\s+(?:the\s+)?(?:system\s+)?(?:prompt|instructions)\b",
            _I,
        ),
    ),
)
# One search for "could any rule match here at all": most prompts match none, and one pass of
# an alternation costs far less than a pass per rule. Only then is each rule run.
_ANY_RULE = _pattern(
    "|".join(f"(?:{pattern.pattern})" for pattern in (_OVERRIDE, *(rule for _, _, rule in _RULES))), _I | re.M
)
_INVISIBLE = _pattern("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_TAG_CHARACTERS = _pattern("[\U000e0000-\U000e007f]")
_ENCODED_BLOB = _pattern(r"[A-Za-z0-9+/]{200,}={0,2}")


def detect_injection(text: str) -> InjectionVerdict:
    """Score ``text`` for prompt injection: 1 - prod(1 - w) over the strongest weight of each
    matching reason, so one weak signal stays low and independent signals add up."""
    weights: dict[str, float] = {}
    spans: list[tuple[int, int]] = []

    def hit(reason: str, weight: float, span: tuple[int, int] | None) -> None:
        weights[reason] = max(weights.get(reason, 0.0), weight)
        if span is not None:
            spans.append(span)

    if _ANY_RULE.search(text):
        for match in _OVERRIDE.finditer(text):
            strong = bool(_STRONG_QUANT.search(match.group("quant"))) or bool(
                _FOLLOW_UP.match(text[match.end() :])
            )
            hit("instruction_override", 0.85 if strong else 0.45, match.span())
        for reason, weight, pattern in _RULES:
            for match in pattern.finditer(text):
                hit(reason, weight, match.span())
    if _TAG_CHARACTERS.search(text):
        hit("hidden_characters", 0.6, None)
    elif len(_INVISIBLE.findall(text)) >= 3:
        hit("hidden_characters", 0.4, None)
    if _ENCODED_BLOB.search(text):
        hit("encoded_payload", 0.2, None)
    remaining = 1.0
    for weight in weights.values():
        remaining *= 1.0 - weight
    return InjectionVerdict(
        score=round(1.0 - remaining, 4),
        reasons=tuple(sorted(weights, key=lambda reason: (-weights[reason], reason))),
        spans=tuple(sorted(spans)),
    )


# -- PII and secrets -------------------------------------------------------------------------------


class _Match(Struct, frozen=True):
    type: FindingType
    kind: str
    start: int
    end: int


_EMAIL = _pattern(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?P<tld>[A-Za-z]{2,24})\b"
)
# "icon@2x.png" is a file name, not an address.
_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "pdf"})

_PHONE_PATTERNS: tuple[tuple[str, LazyPattern, int, int], ...] = (
    # (kind, pattern, min digits, max digits)
    ("e164", _pattern(r"(?<![\w+])\+[1-9](?:[ .\-]?\(?\d\)?){6,16}(?![\d])"), 8, 15),
    ("nanp", _pattern(r"(?<![\w(])(?:\(\d{3}\)[ ]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![\d])"), 10, 10),
    # Trunk-prefixed national numbers (UK, France, Germany...): spaces or hyphens only, so
    # dotted dates and times ("01.02.2024 12:30") stay out.
    ("national", _pattern(r"(?<![\w.])\(?0\d{1,4}\)?(?:[ \-]\d{2,6}){1,4}(?![\d:])"), 9, 12),
)

_CARD = _pattern(r"(?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d])")

_SECRETS: tuple[tuple[str, LazyPattern], ...] = (
    (
        "private_key",
        _pattern(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
            r"(?: BLOCK)?-----|.*\Z)",
            re.S,
        ),
    ),
    ("aws_access_key", _pattern(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    ("anthropic_key", _pattern(r"\bsk-ant-[A-Za-z0-9_\-]{20,}")),
    ("openai_key", _pattern(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    ("tollgate_key", _pattern(r"\btg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}\b")),
    (
        "github_token",
        _pattern(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    ),
    ("google_api_key", _pattern(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("slack_token", _pattern(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("stripe_key", _pattern(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("jwt", _pattern(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
)
_ASSIGNMENT = _pattern(
    r"(?i)\b[A-Za-z0-9_.\-]*(?:api[_\-]?key|apikey|secret|token|passw(?:or)?d|pwd|access[_\-]?key|"
    r"auth[_\-]?key|credentials?|private[_\-]?key)[A-Za-z0-9_.\-]*[\"']?\s*(?:=|:|=>)\s*[\"']?"
    r"(?P<value>[A-Za-z0-9/+=_\-.~]{16,})"
)
_MIN_ENTROPY_BITS = 3.5
# Cheap tests of whether a family of patterns can match at all (most prompts hold no secret,
# card, address or number): each family's patterns run only when its test passes.
_SECRET_HINT = _pattern(
    r"-----BEGIN |A[KSB]IA|ACCA|sk-|tg_|gh[pousr]_|github_pat_|AIza|xox|_live_|_test_|eyJ"
)
_ASSIGNMENT_HINT = _pattern(r"(?i)key|secret|token|passw|pwd|credential")
_DIGIT = _pattern(r"\d")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The issuer of a card number by its prefix and length; ``None`` when none fits."""
    length = len(digits)
    prefix2, prefix4, prefix6 = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4" and length in (13, 16, 19):
        return "visa"
    if (51 <= prefix2 <= 55 or 2221 <= prefix4 <= 2720) and length == 16:
        return "mastercard"
    if prefix2 in (34, 37) and length == 15:
        return "amex"
    if (prefix4 == 6011 or prefix2 == 65 or 644 <= prefix4 // 10 <= 649 or 622126 <= prefix6 <= 622925) and (
        16 <= length <= 19
    ):
        return "discover"
    if 3528 <= prefix4 <= 3589 and 16 <= length <= 19:
        return "jcb"
    if (300 <= prefix4 // 10 <= 305 or prefix2 in (36, 38, 39)) and 14 <= length <= 19:
        return "diners"
    if prefix2 == 62 and 16 <= length <= 19:
        return "unionpay"
    return None


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(value: str) -> bool:
    classes = sum(
        (any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value))
    )
    return classes >= 2 and shannon_entropy(value) >= _MIN_ENTROPY_BITS


def find_sensitive(text: str) -> list[tuple[FindingType, str, int, int]]:
    """Every secret, card number, e-mail address and phone number in ``text``, as
    ``(type, kind, start, end)``, without overlaps (the higher-priority type wins)."""
    found: list[_Match] = []
    if _SECRET_HINT.search(text):
        for kind, pattern in _SECRETS:
            found.extend(_Match("secret", kind, m.start(), m.end()) for m in pattern.finditer(text))
    if _ASSIGNMENT_HINT.search(text):
        for m in _ASSIGNMENT.finditer(text):
            if _looks_random(m.group("value")):
                found.append(_Match("secret", "generic_secret", m.start("value"), m.end("value")))
    has_digits = _DIGIT.search(text) is not None
    if has_digits:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                brand = card_brand(digits)
                if brand:
                    found.append(_Match("card_number", brand, m.start(), m.end()))
    if "@" in text:
        for m in _EMAIL.finditer(text):
            if m.group("tld").lower() not in _FILE_EXTENSIONS:
                found.append(_Match("email", "email", m.start(), m.end()))
    if has_digits:
        for kind, pattern, low, high in _PHONE_PATTERNS:
            for m in pattern.finditer(text):
                if low <= sum(c.isdigit() for c in m.group()) <= high:
                    found.append(_Match("phone", kind, m.start(), m.end()))
    # Keep the strongest of overlapping matches: by priority, then the longest.
    found.sort(key=lambda f: (_PRIORITY[f.type], -(f.end - f.start), f.start))
    kept: list[_Match] = []
    for candidate in found:
        if all(candidate.end <= k.start or candidate.start >= k.end for k in kept):
            kept.append(candidate)
    kept.sort(key=lambda f: f.start)
    return [(f.type, f.kind, f.start, f.end) for f in kept]


# -- the scan ----------------------------------------------------------------------------------------


def _redact(text: str, spans: Sequence[tuple[int, int, FindingType]]) -> str:
    """``text`` with each span replaced by ``[REDACTED:<type>]`` (overlaps merged)."""
    merged: list[list[Any]] = []
    for start, end, kind in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, kind])
    out = []
    cursor = 0
    for start, end, kind in merged:
        out.append(text[cursor:start])
        out.append(f"[REDACTED:{kind}]")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def check_limits(texts: Sequence[str], limits: ContentLimits) -> None:
    """``PayloadTooLarge`` when there are too many texts or characters."""
    if len(texts) > limits.max_messages:
        raise PayloadTooLarge(f"{len(texts)} messages; the limit is {limits.max_messages}")
    chars = sum(len(text) for text in texts)
    if chars > limits.max_prompt_chars:
        raise PayloadTooLarge(f"the prompt has {chars} characters; the limit is {limits.max_prompt_chars}")


def _scan(
    texts: Sequence[str], roles: Sequence[Role], policy: ContentPolicy, limits: ContentLimits
) -> tuple[list[str], list[Finding]]:
    check_limits(texts, limits)
    out: list[str] = []
    findings: list[Finding] = []
    for index, (text, role) in enumerate(zip(texts, roles, strict=True)):
        local: list[Finding] = [
            Finding(kind_type, kind, index, start, end, policy.action_for(kind_type))
            for kind_type, kind, start, end in find_sensitive(text)
        ]
        injection_spans: tuple[tuple[int, int], ...] = ()
        if role in policy.injection_roles:
            verdict = detect_injection(text)
            if verdict.score >= policy.injection_threshold:
                injection_spans = verdict.spans
                start, end = (verdict.spans[0][0], verdict.spans[-1][1]) if verdict.spans else (0, 0)
                local.append(
                    Finding(
                        "prompt_injection",
                        verdict.reasons[0],
                        index,
                        start,
                        end,
                        policy.action_for("prompt_injection"),
                        score=verdict.score,
                        reasons=verdict.reasons,
                    )
                )
        local = [f for f in local if f.action != "allow"]
        redactions: list[tuple[int, int, FindingType]] = []
        for finding in local:
            if finding.action != "redact":
                continue
            if finding.type == "prompt_injection":
                redactions.extend((s, e, "prompt_injection") for s, e in injection_spans)
            else:
                redactions.append((finding.start, finding.end, finding.type))
        out.append(_redact(text, redactions) if redactions else text)
        findings.extend(local)
    blocked = sorted({f.type for f in findings if f.action == "block"}, key=lambda t: _PRIORITY[t])
    if blocked:
        raise ContentBlocked(
            f"the request was blocked by the content policy ({', '.join(blocked)})",
            extra={"findings": [f.as_record() for f in findings if f.action == "block"]},
        )
    return out, findings


def scan_messages(
    messages: Sequence[ChatMessage], policy: ContentPolicy, limits: ContentLimits | None = None
) -> ScanResult:
    """Check chat messages against ``policy``: raises ``PayloadTooLarge`` or
    ``ContentBlocked``; otherwise the messages to send (redacted) and the findings."""
    texts, findings = _scan(
        [m.content for m in messages], [m.role for m in messages], policy, limits or ContentLimits()
    )
    return ScanResult(
        messages=tuple(replace(m, content=text) for m, text in zip(messages, texts, strict=True)),
        findings=tuple(findings),
    )


def scan_texts(
    texts: Sequence[str], policy: ContentPolicy, limits: ContentLimits | None = None, *, role: Role = "user"
) -> TextScanResult:
    """The same for bare texts (embedding inputs, an image prompt), each read as ``role``."""
    out, findings = _scan(list(texts), [role] * len(texts), policy, limits or ContentLimits())
    return TextScanResult(texts=tuple(out), findings=tuple(findings))
