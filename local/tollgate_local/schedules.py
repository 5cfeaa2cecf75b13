"""Schedule event sources: ``Schedule`` (EventBridge rule) and ``ScheduleV2`` (EventBridge
Scheduler) events of the template's functions, fired on their expression and on demand.

Expressions: ``rate(N minute|minutes|hour|hours|day|days)``, ``at(yyyy-mm-ddThh:mm:ss)`` and
``cron(minutes hours day-of-month month day-of-week year)`` with ``*``, ``?``, lists, ranges,
steps and month/day names, in UTC. The cron forms ``L``, ``W`` and ``#`` are not understood
locally; such a schedule fires hourly instead (said in the log). A rate schedule first fires
one period after start, as a new EventBridge rule does.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from tollgate_local.gateway import FunctionFailed, Invoker
from tollgate_local.resources import ACCOUNT, REGION
from tollgate_local.template import Resolver, function_properties, resources_of_type

logger = logging.getLogger("tollgate_local.schedules")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_AT = re.compile(r"^at\(\s*(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_WEEKDAYS = {d: i + 1 for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}  # 1 = Sunday
_NO_NAMES: dict[str, int] = {}
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minutes", 0, 59, _NO_NAMES),
    ("hours", 0, 23, _NO_NAMES),
    ("day-of-month", 1, 31, _NO_NAMES),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _WEEKDAYS),
    ("year", 1970, 2199, _NO_NAMES),
)


class UnsupportedExpression(ValueError):
    """A schedule expression the local runtime cannot evaluate."""


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int]) -> frozenset[int] | None:
    """The values a cron field allows; ``None`` for ``*`` and ``?`` (anything)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.upper().split(","):
        if any(mark in part for mark in ("L", "W", "#")) and part not in names:
            raise UnsupportedExpression(f"cron field {text!r}")
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = names.get(first) or int(first), names.get(last) or int(last)
        else:
            start = names.get(base) or int(base)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise UnsupportedExpression(f"cron field {text!r} is out of range")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed expression; ``next_after`` gives the next firing time strictly after a time."""

    text: str
    period: timedelta | None = None
    at: datetime | None = None
    cron: tuple[frozenset[int] | None, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> ScheduleExpression:
        """Parse ``rate(...)``, ``at(...)`` or ``cron(...)``; raises ``UnsupportedExpression``."""
        text = text.strip()
        if match := _RATE.match(text):
            amount, unit = int(match.group(1)), match.group(2).rstrip("s")
            if amount < 1:
                raise UnsupportedExpression(text)
            return cls(text, period=timedelta(seconds=amount * _UNITS[unit]))
        if match := _AT.match(text):
            return cls(text, at=datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC))
        if match := _CRON.match(text):
            fields = match.group(1).split()
            if len(fields) != len(_CRON_FIELDS):
                raise UnsupportedExpression(f"{text}: a cron expression has 6 fields")
            parsed = tuple(
                _cron_field(value, low, high, names)
                for value, (_, low, high, names) in zip(fields, _CRON_FIELDS, strict=True)
            )
            return cls(text, cron=parsed)
        raise UnsupportedExpression(text)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first firing time after ``moment`` (a rate: one period later); ``None`` if the
        expression never fires again."""
        if self.period is not None:
            return moment + self.period
        if self.at is not None:
            return self.at if self.at > moment else None
        return self._next_cron(moment)

    def _next_cron(self, moment: datetime) -> datetime | None:
        assert self.cron is not None
        minutes, hours, days, months, weekdays, years = self.cron
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Jump a month, a day or an hour at a time when that part cannot match: a few hundred
        # steps at most for any expression that fires within a few years.
        for _ in range(200_000):
            if years is not None and candidate.year not in years:
                if candidate.year > max(years):
                    return None
                candidate = datetime(candidate.year + 1, 1, 1, tzinfo=UTC)
            elif months is not None and candidate.month not in months:
                candidate = _first_of_next_month(candidate)
            elif not self._day_matches(candidate, days, weekdays):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
            elif hours is not None and candidate.hour not in hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
            elif minutes is not None and candidate.minute not in minutes:
                candidate += timedelta(minutes=1)
            else:
                return candidate
        return None

    @staticmethod
    def _day_matches(moment: datetime, days: frozenset[int] | None, weekdays: frozenset[int] | None) -> bool:
        aws_weekday = (moment.isoweekday() % 7) + 1  # Sunday = 1 ... Saturday = 7
        return (days is None or moment.day in days) and (weekdays is None or aws_weekday in weekdays)


def _first_of_next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return datetime(moment.year + 1, 1, 1, tzinfo=UTC)
    return datetime(moment.year, moment.month + 1, 1, tzinfo=UTC)


HOURLY = ScheduleExpression("rate(1 hour)", period=timedelta(hours=1))


@dataclass(frozen=True)
class ScheduleSource:
    """One ``Schedule`` or ``ScheduleV2`` event of a function."""

    function_id: str
    event_name: str
    kind: str  # "Schedule" (EventBridge rule) or "ScheduleV2" (EventBridge Scheduler)
    expression: ScheduleExpression
    input: Any  # the template's Input (parsed JSON), sent instead of the scheduled event
    enabled: bool
    name: str

    @property
    def arn(self) -> str:
        if self.kind == "ScheduleV2":
            return f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{self.name}"
        return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.name}"


def _parse_expression(text: str, where: str) -> ScheduleExpression:
    try:
        return ScheduleExpression.parse(text)
    except UnsupportedExpression as exc:
        logger.warning("%s: %s is not understood locally (%s); it fires hourly", where, text, exc)
        return HOURLY


def _input(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def schedule_sources(template: Mapping[str, Any], resolver: Resolver) -> list[ScheduleSource]:
    """Every ``Schedule`` and ``ScheduleV2`` event of every function of the template."""
    sources = []
    for function_id in resources_of_type(template, "AWS::Serverless::Function"):
        events = function_properties(template, function_id).get("Events") or {}
        for event_name, event in events.items():
            kind = event.get("Type")
            if kind not in ("Schedule", "ScheduleV2"):
                continue
            props = resolver.resolve(event.get("Properties") or {})
            text = str(props.get("Schedule") if kind == "Schedule" else props.get("ScheduleExpression"))
            state = str(props.get("State", "ENABLED")).upper()
            enabled = str(props.get("Enabled", True)).lower() != "false" and state != "DISABLED"
            sources.append(
                ScheduleSource(
                    function_id=function_id,
                    event_name=event_name,
                    kind=str(kind),
                    expression=_parse_expression(text, f"{function_id}.{event_name}"),
                    input=_input(props.get("Input")),
                    enabled=enabled,
                    name=str(props.get("Name") or f"{function_id}-{event_name}"),
                )
            )
    return sources


def scheduled_event(source: ScheduleSource, now: datetime) -> Any:
    """What the function receives: the template's ``Input`` if it has one, otherwise the
    event EventBridge sends for a schedule."""
    if source.input is not None:
        return source.input
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if source.kind == "ScheduleV2" else "aws.events",
        "account": ACCOUNT,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [source.arn],
        "detail": {},
    }


@dataclass
class Firing:
    """The outcome of one firing of a schedule."""

    function_id: str
    event_name: str
    ok: bool
    result: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "function": self.function_id,
            "event": self.event_name,
            "ok": self.ok,
            "result": self.result,
            "error": self.error,
        }


class Scheduler:
    """Fires the enabled schedules of the template on time, and any schedule on demand."""

    def __init__(
        self,
        sources: list[ScheduleSource],
        invoke: Invoker,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sources = sources
        self._invoke = invoke
        self._clock = clock
        self._due: dict[tuple[str, str], datetime | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, now: datetime) -> None:
        """Plan the first firing, after ``now``, of every enabled schedule."""
        for source in self.sources:
            if source.enabled:
                self._due[(source.function_id, source.event_name)] = source.expression.next_after(now)

    def start(self) -> None:
        """Plan the first firings and start the timer thread."""
        self.plan(self._clock())
        if any(when is not None for when in self._due.values()):
            self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def due(self, function_id: str, event_name: str) -> datetime | None:
        """When that schedule fires next (``None``: never, or disabled)."""
        return self._due.get((function_id, event_name))

    def next_due(self) -> datetime | None:
        """When the next schedule fires."""
        pending = [when for when in self._due.values() if when is not None]
        return min(pending) if pending else None

    def run_due(self, now: datetime) -> list[ScheduleSource]:
        """Start (each in its own thread) every schedule due at ``now``, plan its next firing,
        and return what was started."""
        started = []
        for source in self.sources:
            key = (source.function_id, source.event_name)
            when = self._due.get(key)
            if when is None or when > now:
                continue
            # Missed firings (a laptop asleep) are skipped, not replayed: EventBridge does not
            # replay them either.
            following = source.expression.next_after(when)
            while following is not None and following <= now:
                following = source.expression.next_after(following)
            self._due[key] = following
            threading.Thread(
                target=self.fire, args=(source, now), name=f"fire-{source.function_id}", daemon=True
            ).start()
            started.append(source)
        return started

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            self.run_due(now)
            upcoming = self.next_due()
            if upcoming is None:
                return
            self._stop.wait(min(60.0, max(0.05, (upcoming - self._clock()).total_seconds())))

    def fire(self, source: ScheduleSource, now: datetime | None = None) -> Firing:
        """Invoke the function of ``source`` with its scheduled event, now."""
        event = scheduled_event(source, now or self._clock())
        try:
            # Lambda takes any JSON as an event; the invoker forwards whatever it is given.
            result = self._invoke(source.function_id, cast(dict[str, Any], event))
        except FunctionFailed as exc:
            logger.warning("schedule %s.%s failed: %s", source.function_id, source.event_name, exc)
            return Firing(source.function_id, source.event_name, ok=False, error=str(exc))
        return Firing(source.function_id, source.event_name, ok=True, result=result)

    def fire_function(self, function_id: str, event_name: str | None = None) -> list[Firing] | None:
        """Fire every schedule of a function (or the one named), enabled or not; ``None`` if it
        has none."""
        chosen = [
            s
            for s in self.sources
            if s.function_id == function_id and (event_name is None or s.event_name == event_name)
        ]
        if not chosen:
            return None
        return [self.fire(source) for source in chosen]
