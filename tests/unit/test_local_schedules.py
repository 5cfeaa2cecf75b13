"""The local runtime's schedules: expressions, the event EventBridge sends, firing on time
(with a fake clock) and on demand. The function is a fake invoker."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tollgate_local.gateway import FunctionFailed
from tollgate_local.resources import ACCOUNT, REGION
from tollgate_local.schedules import (
    HOURLY,
    ScheduleExpression,
    Scheduler,
    UnsupportedExpression,
    schedule_sources,
    scheduled_event,
)
from tollgate_local.template import Resolver


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _function(events: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {"CodeUri": "functions/x/", "Handler": "app.lambda_handler", "Events": events},
    }


TEMPLATE: dict[str, Any] = {
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Resources": {
        "ClockFunction": _function(
            {
                "Every15Minutes": {"Type": "Schedule", "Properties": {"Schedule": "rate(15 minutes)"}},
                "Nightly": {
                    "Type": "ScheduleV2",
                    "Properties": {
                        "ScheduleExpression": "cron(30 2 * * ? *)",
                        "Input": '{"task": "rollup"}',
                        "Name": {"Fn::Sub": "nightly-${Stage}"},
                    },
                },
                "Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)", "Enabled": False}},
                "OffV2": {
                    "Type": "ScheduleV2",
                    "Properties": {"ScheduleExpression": "rate(1 minute)", "State": "DISABLED"},
                },
                "Weird": {"Type": "Schedule", "Properties": {"Schedule": "cron(0 12 L * ? *)"}},
                "Http": {"Type": "Api", "Properties": {"Path": "/x", "Method": "GET"}},
            }
        ),
    },
}


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("rate(1 minute)", "2024-05-01T10:00:30", "2024-05-01T10:01:30"),
        ("rate(15 minutes)", "2024-05-01T10:00:00", "2024-05-01T10:15:00"),
        ("rate(2 hours)", "2024-05-01T10:00:00", "2024-05-01T12:00:00"),
        ("rate(1 day)", "2024-05-01T10:00:00", "2024-05-02T10:00:00"),
        ("cron(0 12 * * ? *)", "2024-05-01T13:00:00", "2024-05-02T12:00:00"),
        ("cron(0/15 * * * ? *)", "2024-05-01T10:07:10", "2024-05-01T10:15:00"),
        ("cron(0/15 * * * ? *)", "2024-05-01T10:15:00", "2024-05-01T10:30:00"),
        ("cron(5,35 8-9 * * ? *)", "2024-05-01T09:40:00", "2024-05-02T08:05:00"),
        # 2024-05-04 is a Saturday: weekdays only means Monday
        ("cron(0 8 ? * MON-FRI *)", "2024-05-04T07:00:00", "2024-05-06T08:00:00"),
        ("cron(0 0 1 JAN ? *)", "2024-05-01T00:00:00", "2025-01-01T00:00:00"),
        ("cron(0 0 29 FEB ? *)", "2025-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("at(2030-01-01T00:00:00)", "2024-05-01T00:00:00", "2030-01-01T00:00:00"),
    ],
)
def test_next_firing(expression: str, after: str, expected: str) -> None:
    assert ScheduleExpression.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "after"),
    [("at(2020-01-01T00:00:00)", "2024-05-01T00:00:00"), ("cron(0 0 1 1 ? 2023)", "2024-05-01T00:00:00")],
)
def test_an_expression_in_the_past_never_fires_again(expression: str, after: str) -> None:
    assert ScheduleExpression.parse(expression).next_after(at(after)) is None


@pytest.mark.parametrize(
    "expression",
    [
        "rate(0 minutes)",
        "rate(5 weeks)",
        "cron(0 12 * *)",
        "cron(0 12 L * ? *)",
        "cron(0 12 ? * 6#3 *)",
        "cron(99 * * * ? *)",
        "every day",
    ],
)
def test_unsupported_expressions_are_refused(expression: str) -> None:
    with pytest.raises(UnsupportedExpression):
        ScheduleExpression.parse(expression)


def test_sources_come_from_the_template() -> None:
    sources = {s.event_name: s for s in schedule_sources(TEMPLATE, Resolver(refs={"Stage": "dev"}))}
    assert set(sources) == {"Every15Minutes", "Nightly", "Off", "OffV2", "Weird"}
    assert sources["Every15Minutes"].expression.period == timedelta(minutes=15)
    assert sources["Every15Minutes"].enabled
    assert sources["Nightly"].kind == "ScheduleV2"
    assert sources["Nightly"].input == {"task": "rollup"}
    assert sources["Nightly"].name == "nightly-dev"
    assert not sources["Off"].enabled
    assert not sources["OffV2"].enabled
    # What the local runtime cannot evaluate still fires, hourly
    assert sources["Weird"].expression == HOURLY


def test_the_event_is_eventbridges_scheduled_event_or_the_templates_input() -> None:
    sources = {s.event_name: s for s in schedule_sources(TEMPLATE, Resolver(refs={"Stage": "dev"}))}
    event = scheduled_event(sources["Every15Minutes"], at("2024-05-01T10:15:00"))
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2024-05-01T10:15:00Z"
    assert event["account"] == ACCOUNT
    assert event["region"] == REGION
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/ClockFunction-Every15Minutes"]
    assert event["detail"] == {}
    assert event["id"]
    assert scheduled_event(sources["Nightly"], at("2024-05-01T02:30:00")) == {"task": "rollup"}


class FakeFunction:
    def __init__(self, expected: int = 1) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail = False
        self._expected = expected
        self.done = threading.Event()
        self._lock = threading.Lock()

    def expect(self, total: int) -> None:
        with self._lock:
            self._expected = total
            self.done.clear()

    def __call__(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.events.append((function_id, event))
            if len(self.events) >= self._expected:
                self.done.set()
        if self.fail:
            raise FunctionFailed("RuntimeError: boom")
        return {"ok": True}


def test_enabled_schedules_fire_when_due_and_missed_firings_are_not_replayed() -> None:
    # Given a clock at 10:00 and the template's schedules
    function = FakeFunction()
    scheduler = Scheduler(schedule_sources(TEMPLATE, Resolver(refs={"Stage": "dev"})), function)
    scheduler.plan(at("2024-05-01T10:00:00"))  # run_due is driven by hand, without the timer thread
    # Then the first rate firing is one period after start, the nightly cron at 02:30
    assert scheduler.next_due() == at("2024-05-01T10:15:00")
    assert scheduler.run_due(at("2024-05-01T10:14:59")) == []
    # When the clock passes 10:15
    fired = scheduler.run_due(at("2024-05-01T10:15:01"))
    # Then only the rate schedule fires (disabled ones never)
    assert [s.event_name for s in fired] == ["Every15Minutes"]
    assert function.done.wait(5)
    assert function.events[0][0] == "ClockFunction"
    assert function.events[0][1]["detail-type"] == "Scheduled Event"
    assert scheduler.due("ClockFunction", "Every15Minutes") == at("2024-05-01T10:30:00")
    assert scheduler.due("ClockFunction", "Off") is None
    # When the laptop slept two hours: one firing each, then back on the grid
    function.expect(3)
    fired = scheduler.run_due(at("2024-05-01T12:31:00"))
    # (the cron the runtime cannot evaluate fires hourly: its first hour has passed too)
    assert sorted(s.event_name for s in fired) == ["Every15Minutes", "Weird"]
    assert scheduler.due("ClockFunction", "Every15Minutes") == at("2024-05-01T12:45:00")
    assert scheduler.due("ClockFunction", "Weird") == at("2024-05-01T13:00:00")
    assert function.done.wait(5)


def test_a_function_fires_on_demand_even_when_disabled() -> None:
    function = FakeFunction()
    scheduler = Scheduler(schedule_sources(TEMPLATE, Resolver(refs={"Stage": "dev"})), function)
    firings = scheduler.fire_function("ClockFunction", "Off")
    assert firings is not None
    assert [(f.event_name, f.ok) for f in firings] == [("Off", True)]
    assert scheduler.fire_function("ClockFunction", "NoSuchEvent") is None
    assert scheduler.fire_function("NoSuchFunction") is None


def test_a_failed_firing_is_reported_not_raised() -> None:
    function = FakeFunction()
    function.fail = True
    scheduler = Scheduler(schedule_sources(TEMPLATE, Resolver(refs={"Stage": "dev"})), function)
    firings = scheduler.fire_function("ClockFunction", "Every15Minutes")
    assert firings is not None
    assert firings[0].ok is False
    assert "boom" in str(firings[0].error)


def test_the_timer_thread_fires_on_time() -> None:
    # Given a one-time schedule a second from now
    when = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    template = {
        "Resources": {
            "SoonFunction": _function(
                {
                    "Soon": {
                        "Type": "ScheduleV2",
                        "Properties": {"ScheduleExpression": f"at({when:%Y-%m-%dT%H:%M:%S})"},
                    }
                }
            )
        }
    }
    function = FakeFunction()
    scheduler = Scheduler(schedule_sources(template, Resolver()), function)
    # When the scheduler runs
    scheduler.start()
    try:
        # Then the function gets EventBridge Scheduler's event at that time, once
        assert function.done.wait(10)
    finally:
        scheduler.stop()
    assert datetime.now(UTC) >= when
    (function_id, event), *more = function.events
    assert (function_id, more) == ("SoonFunction", [])
    assert event["source"] == "aws.scheduler"
    assert scheduler.due("SoonFunction", "Soon") is None
