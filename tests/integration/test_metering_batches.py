"""Batch reservations through DynamoDB (moto): one hold and one count for a whole batch, then
each part settled or released on its own, exactly once; refused whole or accepted whole. After
every test the ledger of every org adds up (the audit of ``metering_on_stack``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_metering_support import START, Metering, metering_on_stack
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.errors import Conflict, InsufficientCredits, NotFound, RateLimited
from tollgate.metering.models import EntryKind, ReservationStatus, Usage
from tollgate.metering.ports import MeteringCommit
from tollgate.metering.pricing import default_pricing
from tollgate.metering.service import MeteringService
from tollgate.plans import LimitSpec, load_plans
from tollgate_local.resources import CreatedStack

ORG = "org_batch"
IMAGE = Usage(provider="mock", model="image", images=1, image_size="1024x1024")  # $0.004
SMALL = Usage(provider="mock", model="image", images=1, image_size="256x256")  # $0.001
IMAGE_CREDITS = 5_200  # 4,000 micro-USD x 1.3 at $0.01 per credit
SMALL_CREDITS = 1_300
HOURLY_IMAGES = f"C#h{START:%Y%m%d%H}#requests#org#image#*#{ORG}"
DAILY_COST = f"C#d{START:%Y%m%d}#cost_micro_usd#org#image#*#{ORG}"


@pytest.fixture
def metering(stack: CreatedStack) -> Iterator[Metering]:
    yield from metering_on_stack(stack)


def funded(m: Metering, credits: int = 100_000, hourly_images: int = 20) -> None:
    m.service.grant(ORG, credits, operation_id="seed")
    m.create_org(ORG)
    m.service.set_limit_overrides(
        ORG, [LimitSpec(scope="org", metric="requests", window="hour", max=hourly_images, kind="image")]
    )


def parts(count: int, usage: Usage = IMAGE) -> list[tuple[str, Usage]]:
    return [(f"job_{n}", usage) for n in range(count)]


def test_a_batch_is_held_and_counted_as_all_its_parts_in_one_move(metering: Metering) -> None:
    # Given 10 credits
    funded(metering)
    # When a batch of four images is reserved
    reservation = metering.service.reserve_batch(metering.caller(ORG), "image", parts(4), "bat_1")
    # Then the four estimates are held in one hold entry and four requests are counted
    assert reservation.held_credits == 4 * IMAGE_CREDITS
    assert [p.part_id for p in reservation.parts] == ["job_0", "job_1", "job_2", "job_3"]
    assert metering.service.balance(ORG).held == 4 * IMAGE_CREDITS
    assert metering.counter(ORG, HOURLY_IMAGES) == 4
    assert metering.counter(ORG, DAILY_COST) == 4 * 4_000
    assert [e.kind for e in metering.store.all_entries(ORG)] == [EntryKind.GRANT, EntryKind.HOLD]
    # and the same reservation id again changes nothing
    again = metering.service.reserve_batch(metering.caller(ORG), "image", parts(4), "bat_1")
    assert again.reservation_id == "bat_1"
    assert metering.service.balance(ORG).held == 4 * IMAGE_CREDITS
    assert metering.counter(ORG, HOURLY_IMAGES) == 4


def test_a_batch_over_a_limit_is_refused_whole_and_counts_nothing(metering: Metering) -> None:
    # Given room for 5 images this hour, 3 of them used
    funded(metering, hourly_images=5)
    metering.service.reserve_batch(metering.caller(ORG), "image", parts(3), "bat_1")
    # When a batch of three more is asked for
    with pytest.raises(RateLimited) as refused:
        metering.service.reserve_batch(metering.caller(ORG), "image", parts(3), "bat_2")
    # Then it is refused whole: nothing more counted, nothing more held
    assert refused.value.extra["limit"]["max"] == 5
    assert metering.counter(ORG, HOURLY_IMAGES) == 3
    assert metering.service.balance(ORG).held == 3 * IMAGE_CREDITS
    # and a batch bigger than the limit on its own is refused as such
    with pytest.raises(RateLimited, match="alone exceeds"):
        metering.service.reserve_batch(metering.caller(ORG), "image", parts(6), "bat_3")


def test_a_batch_the_org_cannot_afford_is_refused_whole(metering: Metering) -> None:
    # Given credits for three images and a bit
    funded(metering, credits=3 * IMAGE_CREDITS + 100)
    # When a batch of four is asked for
    with pytest.raises(InsufficientCredits) as refused:
        metering.service.reserve_batch(metering.caller(ORG), "image", parts(4), "bat_1")
    # Then nothing is held or counted, and the problem says what was needed
    assert refused.value.extra == {
        "needed": 4 * IMAGE_CREDITS,
        "available": 3 * IMAGE_CREDITS + 100,
        "units_per_credit": 10_000,
    }
    assert metering.service.balance(ORG).held == 0
    assert metering.counter(ORG, HOURLY_IMAGES) == 0
    with pytest.raises(NotFound):
        metering.service.reservation(ORG, "bat_1")


def test_a_mixed_batch_settles_and_releases_each_part_once(metering: Metering) -> None:
    # Given a batch of three 1024 images and one 256 image
    funded(metering)
    caller = metering.caller(ORG)
    metering.service.reserve_batch(caller, "image", [*parts(3), ("job_small", SMALL)], "bat_1")
    held = 3 * IMAGE_CREDITS + SMALL_CREDITS
    # When two parts settle, one is released and the small one settles
    first = metering.service.settle_part(ORG, "bat_1", "job_0", IMAGE)
    metering.service.settle_part(ORG, "bat_1", "job_1", IMAGE)
    released = metering.service.release_part(ORG, "bat_1", "job_2")
    # Then (so far) two images are charged, one released, one still held
    assert (first.charged_credits, first.part_id, first.reservation_id) == (IMAGE_CREDITS, "job_0", "bat_1")
    assert released.released_credits == IMAGE_CREDITS
    balance = metering.service.balance(ORG)
    assert (balance.balance, balance.held) == (100_000 - held + IMAGE_CREDITS, SMALL_CREDITS)
    assert metering.service.reservation(ORG, "bat_1").status is ReservationStatus.HELD
    # and replays act once: settling a settled part returns its settlement, the others conflict
    assert metering.service.settle_part(ORG, "bat_1", "job_0", IMAGE) == first
    assert metering.service.release_part(ORG, "bat_1", "job_2") == released
    with pytest.raises(Conflict):
        metering.service.release_part(ORG, "bat_1", "job_1")
    with pytest.raises(Conflict):
        metering.service.settle_part(ORG, "bat_1", "job_2", IMAGE)
    with pytest.raises(NotFound):
        metering.service.settle_part(ORG, "bat_1", "job_9", IMAGE)
    with pytest.raises(Conflict, match="batch"):
        metering.service.settle(ORG, "bat_1", IMAGE)
    # When the last part settles
    metering.service.settle_part(ORG, "bat_1", "job_small", SMALL)
    # Then the batch is closed: three images charged, the released one un-counted, nothing held
    reservation = metering.service.reservation(ORG, "bat_1")
    assert reservation.status is ReservationStatus.SETTLED
    assert [p.status for p in reservation.parts] == [
        ReservationStatus.SETTLED,
        ReservationStatus.SETTLED,
        ReservationStatus.RELEASED,
        ReservationStatus.SETTLED,
    ]
    balance = metering.service.balance(ORG)
    assert (balance.balance, balance.held) == (100_000 - 2 * IMAGE_CREDITS - SMALL_CREDITS, 0)
    assert metering.counter(ORG, HOURLY_IMAGES) == 3
    assert metering.counter(ORG, DAILY_COST) == 2 * 4_000 + 1_000
    assert metering.audit(ORG) == balance.balance


def test_a_part_settled_above_or_below_its_estimate_moves_its_counters_by_the_difference(
    metering: Metering,
) -> None:
    # Given a batch of two parts estimated at $0.004 each
    funded(metering)
    metering.service.reserve_batch(metering.caller(ORG), "image", parts(2), "bat_1")
    # When one costs $0.001 and the other $0.010 (reported by the provider)
    low = metering.service.settle_part(ORG, "bat_1", "job_0", SMALL)
    high = metering.service.settle_part(ORG, "bat_1", "job_1", Usage(provider="mock", cost_micro_usd=10_000))
    # Then each is charged its actual and the cost counter holds the actual sum
    assert (low.charged_credits, low.released_credits) == (SMALL_CREDITS, IMAGE_CREDITS - SMALL_CREDITS)
    assert high.charged_credits == 13_000
    assert metering.counter(ORG, DAILY_COST) == 11_000
    assert metering.service.balance(ORG).balance == 100_000 - SMALL_CREDITS - 13_000


class RacingStore(DynamoMeteringStore):
    """A store whose first commit lets another writer commit first (between read and write)."""

    def __init__(self, inner: DynamoMeteringStore, before_first_commit: Any) -> None:
        super().__init__(inner._table)
        self._before = before_first_commit

    def commit(self, commit: MeteringCommit) -> None:
        if self._before is not None:
            run, self._before = self._before, None
            run()
        super().commit(commit)


def test_two_workers_settling_parts_at_once_lose_no_move(metering: Metering) -> None:
    # Given a batch of two, and a second worker that settles job_1 while this one settles job_0
    funded(metering)
    metering.service.reserve_batch(metering.caller(ORG), "image", parts(2), "bat_1")
    other = MeteringService(metering.store, default_pricing(), load_plans(), metering.clock)
    racing = RacingStore(metering.store, lambda: other.settle_part(ORG, "bat_1", "job_1", IMAGE))
    this = MeteringService(racing, default_pricing(), load_plans(), metering.clock, sleep=lambda _: None)
    # When this worker's first commit finds the reservation moved on
    settled = this.settle_part(ORG, "bat_1", "job_0", IMAGE)
    # Then it read again and settled its own part: both parts settled, each once
    assert this.raced == 1
    assert settled.charged_credits == IMAGE_CREDITS
    reservation = metering.service.reservation(ORG, "bat_1")
    assert reservation.status is ReservationStatus.SETTLED
    assert reservation.version == 2
    assert metering.service.balance(ORG).balance == 100_000 - 2 * IMAGE_CREDITS


def test_the_stale_hold_sweep_releases_the_open_parts_of_a_batch(metering: Metering) -> None:
    # Given a batch of three, one part settled, then nothing for three hours
    funded(metering)
    metering.service.reserve_batch(metering.caller(ORG), "image", parts(3), "bat_1")
    metering.service.settle_part(ORG, "bat_1", "job_0", IMAGE)
    metering.clock.set(START + timedelta(hours=3))
    # When the sweep runs
    sweep = metering.service.release_stale(ORG, older_than=START + timedelta(hours=1))
    # Then the two open parts are released (in one release entry), and the batch is closed
    assert [r.released_credits for r in sweep.released] == [2 * IMAGE_CREDITS]
    reservation = metering.service.reservation(ORG, "bat_1")
    assert reservation.status is ReservationStatus.SETTLED
    assert [p.status for p in reservation.parts] == [
        ReservationStatus.SETTLED,
        ReservationStatus.RELEASED,
        ReservationStatus.RELEASED,
    ]
    assert [p.release.released_credits for p in reservation.parts[1:] if p.release] == [IMAGE_CREDITS] * 2
    assert metering.service.balance(ORG).held == 0
    assert metering.service.balance(ORG).balance == 100_000 - IMAGE_CREDITS
    # and a part's late settle is a conflict (its credits went back), a second sweep does nothing
    with pytest.raises(Conflict):
        metering.service.settle_part(ORG, "bat_1", "job_1", IMAGE)
    assert metering.service.release_stale(ORG, older_than=START + timedelta(hours=2)).released == ()


def test_a_batch_of_a_hundred_parts_fits_one_transaction(metering: Metering) -> None:
    # Given room for 100 images and credits for them
    funded(metering, credits=100 * SMALL_CREDITS, hourly_images=100)
    # When a batch of 100 is reserved, and every part settles
    metering.service.reserve_batch(metering.caller(ORG), "image", parts(100, SMALL), "bat_1")
    for n in range(100):
        metering.service.settle_part(ORG, "bat_1", f"job_{n}", SMALL)
    # Then the whole of the credits is spent, exactly
    assert metering.service.balance(ORG).balance == 0
    assert metering.service.reservation(ORG, "bat_1").status is ReservationStatus.SETTLED
    assert metering.counter(ORG, HOURLY_IMAGES) == 100
