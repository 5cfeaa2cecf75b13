"""The request path through DynamoDB (moto): reserve, settle, release, refusals and windows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.integration.test_metering_support import START, Metering, metering_on_stack
from tollgate import services
from tollgate.errors import Conflict, InsufficientCredits, NotFound, QuotaExceeded, RateLimited
from tollgate.metering.models import EntryKind, ReservationStatus, Usage
from tollgate.plans import LimitSpec
from tollgate_local.resources import CreatedStack


@pytest.fixture
def metering(stack: CreatedStack) -> Iterator[Metering]:
    yield from metering_on_stack(stack)


ORG = "org_req"
# mock/chat: $0.10 in, $0.20 out per 1M tokens; chat is cost x 1.5 at $0.01 per credit.
ESTIMATE = Usage(provider="mock", model="chat", input_tokens=2_000, output_tokens=8_000)  # 1,800 micro-USD
ACTUAL = Usage(provider="mock", model="chat", input_tokens=2_000, output_tokens=500)  # 300 micro-USD
HOLD, CHARGE = 2_700, 450  # credit units
REQUESTS_KEY = f"C#h{START:%Y%m%d%H}#requests#org#*#*#{ORG}"
TOKENS_KEY = f"C#d{START:%Y%m%d}#tokens#user#*#*#ann"


def funded(m: Metering, credits: int = 1_000_000, hourly: int = 100) -> None:
    m.service.grant(ORG, credits, operation_id="seed")
    m.create_org(ORG)
    m.service.set_limit_overrides(
        ORG,
        [
            LimitSpec(scope="org", metric="requests", window="hour", max=hourly),
            LimitSpec(scope="user", metric="tokens", window="day", max=50_000),
        ],
    )


def entry_kinds(m: Metering) -> list[EntryKind]:
    return [e.kind for e in m.store.all_entries(ORG)]


def test_reserve_then_settle_charges_the_actual_and_counts_the_actual_tokens(metering: Metering) -> None:
    # Given 100 credits
    funded(metering)

    # When a chat request is reserved from its estimate
    reservation = metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "req_1")

    # Then the estimate is held and counted
    assert (reservation.held_credits, reservation.status) == (HOLD, ReservationStatus.HELD)
    assert metering.service.balance(ORG).balance == 1_000_000 - HOLD
    assert metering.service.balance(ORG).held == HOLD
    assert (metering.counter(ORG, REQUESTS_KEY), metering.counter(ORG, TOKENS_KEY)) == (1, 10_000)

    # When it is settled with the actual usage
    settlement = metering.service.settle(ORG, "req_1", ACTUAL)

    # Then only the actual cost is charged, the rest comes back, and the tokens counter shows the actual
    assert (settlement.charged_credits, settlement.released_credits) == (CHARGE, HOLD - CHARGE)
    balance = metering.service.balance(ORG)
    assert (balance.balance, balance.held) == (1_000_000 - CHARGE, 0)
    assert (metering.counter(ORG, REQUESTS_KEY), metering.counter(ORG, TOKENS_KEY)) == (1, 2_500)
    assert entry_kinds(metering) == [EntryKind.GRANT, EntryKind.HOLD, EntryKind.CAPTURE, EntryKind.RELEASE]
    assert metering.service.reservation(ORG, "req_1").status is ReservationStatus.SETTLED


def test_reserve_and_settle_called_twice_act_once(metering: Metering) -> None:
    # Given 100 credits
    funded(metering)
    caller = metering.caller(ORG)

    # When the same reservation arrives twice, and its settlement twice
    first = metering.service.reserve(caller, "chat", ESTIMATE, "req_1")
    again = metering.service.reserve(caller, "chat", ESTIMATE, "req_1")
    settled = metering.service.settle(ORG, "req_1", ACTUAL)
    settled_again = metering.service.settle(ORG, "req_1", ACTUAL)

    # Then each acted once: one hold, one capture, one request counted, one charge
    assert again == first
    assert settled_again == settled
    assert entry_kinds(metering).count(EntryKind.HOLD) == 1
    assert entry_kinds(metering).count(EntryKind.CAPTURE) == 1
    assert metering.counter(ORG, REQUESTS_KEY) == 1
    assert metering.service.balance(ORG).balance == 1_000_000 - CHARGE
    # And a late replay, even with an unaffordable estimate, answers with that same reservation
    # (as it is now: settled) and moves nothing
    replay = metering.service.reserve(caller, "chat", Usage(cost_micro_usd=10**9), "req_1")
    assert (replay.reservation_id, replay.held_credits, replay.draws) == ("req_1", HOLD, first.draws)
    assert replay.status is ReservationStatus.SETTLED
    assert entry_kinds(metering).count(EntryKind.HOLD) == 1


def test_release_returns_everything_and_uncounts_once(metering: Metering) -> None:
    # Given a held reservation
    funded(metering)
    metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "req_1")

    # When the provider call fails and the reservation is released, twice
    released = metering.service.release(ORG, "req_1")
    assert metering.service.release(ORG, "req_1") == released

    # Then the credits and the counters are exactly as before the request, and it cannot be settled
    assert (released.released_credits, released.forfeited_credits) == (HOLD, 0)
    assert metering.service.balance(ORG).balance == 1_000_000
    assert (metering.counter(ORG, REQUESTS_KEY), metering.counter(ORG, TOKENS_KEY)) == (0, 0)
    assert entry_kinds(metering) == [EntryKind.GRANT, EntryKind.HOLD, EntryKind.RELEASE]
    with pytest.raises(Conflict):
        metering.service.settle(ORG, "req_1", ACTUAL)


def test_an_unknown_or_foreign_reservation_is_not_found(metering: Metering) -> None:
    funded(metering)
    metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "req_1")
    with pytest.raises(NotFound):
        metering.service.settle("org_other", "req_1", ACTUAL)
    with pytest.raises(NotFound):
        metering.service.release(ORG, "req_missing")


def test_a_rate_limited_request_is_refused_with_headers_and_counts_nothing(metering: Metering) -> None:
    # Given an hourly limit of 2 requests, both used
    funded(metering, hourly=2)
    caller = metering.caller(ORG)
    for number in (1, 2):
        metering.service.reserve(caller, "chat", ESTIMATE, f"req_{number}")
    balance_before, entries_before = metering.service.balance(ORG).balance, len(entry_kinds(metering))

    # When a third arrives at 14:20
    with pytest.raises(RateLimited) as refused:
        metering.service.reserve(caller, "chat", ESTIMATE, "req_3")

    # Then it is a 429 that says when the hour frees (15:00, 2,400 s) and which limit refused it
    error = refused.value
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.headers == {
        "Retry-After": "2400",
        "RateLimit-Limit": "2",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2400",
    }
    assert error.extra["limit"]["metric"] == "requests"
    assert (error.extra["limit"]["window"], error.extra["limit"]["max"]) == ("hour", 2)
    # And nothing was counted or held for it
    assert metering.counter(ORG, REQUESTS_KEY) == 2
    assert metering.counter(ORG, TOKENS_KEY) == 20_000
    assert metering.service.balance(ORG).balance == balance_before
    assert len(entry_kinds(metering)) == entries_before
    with pytest.raises(NotFound):
        metering.service.reservation(ORG, "req_3")


def test_a_tokens_quota_refuses_with_quota_exceeded_and_counts_nothing(metering: Metering) -> None:
    # Given a daily user quota of 50,000 tokens with 40,000 used
    funded(metering)
    caller = metering.caller(ORG)
    for number in range(4):
        metering.service.reserve(caller, "chat", ESTIMATE, f"req_{number}")

    # When a request estimated at 10,001 tokens arrives
    with pytest.raises(QuotaExceeded) as refused:
        metering.service.reserve(
            caller, "chat", Usage(provider="mock", model="chat", input_tokens=10_001), "big"
        )

    # Then it is refused until midnight UTC, naming the user's token quota, and nothing moved
    assert refused.value.headers["Retry-After"] == str(9 * 3600 + 40 * 60)
    assert refused.value.headers["RateLimit-Remaining"] == "10000"
    assert refused.value.extra["limit"]["scope"] == "user"
    assert refused.value.extra["limit"]["subject"] == "ann"
    assert metering.counter(ORG, REQUESTS_KEY) == 4
    assert metering.counter(ORG, TOKENS_KEY) == 40_000
    # And another user of the same org is not affected by ann's quota
    metering.service.reserve(metering.caller(ORG, user="bob"), "chat", ESTIMATE, "bob_1")


def test_an_unaffordable_request_gets_402_with_the_figures_and_counts_nothing(metering: Metering) -> None:
    # Given 0.2 credit
    funded(metering, credits=2_000)

    # When a request needing 0.27 credit arrives
    with pytest.raises(InsufficientCredits) as refused:
        metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "req_1")

    # Then it is a 402 with the needed and available amounts, and no limit counted it
    assert refused.value.status == 402
    assert (refused.value.extra["needed"], refused.value.extra["available"]) == (HOLD, 2_000)
    assert metering.counter(ORG, REQUESTS_KEY) == 0
    assert metering.counter(ORG, TOKENS_KEY) == 0
    assert metering.service.balance(ORG).balance == 2_000


def test_a_window_rolls_over_on_time_with_no_scheduler_run(metering: Metering) -> None:
    # Given an hourly limit of 1, used at 14:20
    funded(metering, hourly=1)
    caller = metering.caller(ORG)
    metering.service.reserve(caller, "chat", ESTIMATE, "req_1")
    with pytest.raises(RateLimited):
        metering.service.reserve(caller, "chat", ESTIMATE, "req_2")

    # When the clock reaches 15:00 (and nothing else runs)
    metering.clock.set(START.replace(minute=0) + timedelta(hours=1))

    # Then the next request is allowed, and the limit shows the new window
    metering.service.reserve(caller, "chat", ESTIMATE, "req_2")
    hourly = next(
        s for s in metering.service.limits_status(caller) if s.metric == "requests" and s.kind is None
    )
    assert (hourly.used, hourly.max, hourly.resets_at.hour) == (1, 1, 16)


def test_settling_after_the_window_ended_leaves_the_old_window_alone(metering: Metering) -> None:
    # Given a reservation counted in the 14:00 hour
    funded(metering)
    metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "req_1")

    # When it is settled the next day
    metering.clock.set(START + timedelta(days=1))
    metering.service.settle(ORG, "req_1", ACTUAL)

    # Then yesterday's counters keep what they counted, and the charge is still the actual one
    assert metering.counter(ORG, TOKENS_KEY) == 10_000
    assert metering.service.balance(ORG).balance == 1_000_000 - CHARGE


def test_availability_and_limits_status_read_without_counting(metering: Metering) -> None:
    # Given an hourly limit of 1, used
    funded(metering, hourly=1)
    caller = metering.caller(ORG)
    metering.service.reserve(caller, "chat", ESTIMATE, "req_1")

    # When availability is asked for a chat call and a colour analysis
    chat = metering.service.availability(caller, "chat", ESTIMATE)

    # Then it is refused by the hourly limit, with the retry-after, and nothing was counted
    assert (chat.allowed, chat.reason, chat.retry_after) == (False, "rate_limited", 2400)
    assert chat.blocking is not None
    assert chat.blocking.max == 1
    assert metering.counter(ORG, REQUESTS_KEY) == 1
    # And once the hour passes it is allowed, showing the spendable credits
    metering.clock.set(START + timedelta(hours=1))
    later = metering.service.availability(caller, "color_analysis", Usage())
    assert (later.allowed, later.needed_credits, later.available_credits) == (True, 5_000, 1_000_000 - HOLD)
    # And a too-expensive feature is refused for credits
    poor = metering.service.availability(caller, "chat", Usage(cost_micro_usd=10**9))
    assert (poor.allowed, poor.reason) == (False, "insufficient_credits")


def test_stale_holds_are_released_by_the_sweep(metering: Metering) -> None:
    # Given one reservation held since 14:20 and one since 15:20
    funded(metering)
    metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "old")
    metering.clock.set(START + timedelta(hours=1))
    metering.service.reserve(metering.caller(ORG), "chat", ESTIMATE, "new")

    # When the sweep releases holds older than 15:00
    sweep = metering.service.release_stale(ORG, START.replace(minute=0) + timedelta(hours=1))

    # Then only the old one was released, and a second sweep finds nothing
    assert [r.reservation_id for r in sweep.released] == ["old"]
    assert metering.service.reservation(ORG, "new").status is ReservationStatus.HELD
    assert metering.service.release_stale(ORG, START + timedelta(hours=1)).released == ()


def test_the_composition_root_builds_the_service_on_the_template_table(metering: Metering) -> None:
    # Given the functions' environment from template.yaml, then services.metering() works on its table
    service = services.metering()
    service.grant("org_root", 10_000, operation_id="once")
    assert service.balance("org_root").balance == 10_000
    assert services.metering() is service
