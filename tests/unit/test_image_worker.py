"""The image worker's decisions, with in-memory fakes of its stores and of metering: when it
claims, reuses what an earlier attempt stored, retries, gives up (releasing), or leaves a job to
another worker. The real stores and the real queue are in tests/integration/test_images_api.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from tollgate.clock import FixedClock
from tollgate.errors import Conflict
from tollgate.generation.registry import load_models
from tollgate.images.jobs import (
    AssetIndex,
    Claim,
    DedupHit,
    ImageBatch,
    ImageJob,
    ImageSpec,
    JobMessage,
    JobStatus,
    StoredObject,
)
from tollgate.images.worker import Delivery, ImageWorker, Outcome, RetryLater
from tollgate.metering.models import (
    Charge,
    Release,
    Reservation,
    ReservationStatus,
    Settlement,
    Usage,
)
from tollgate.metering.ports import StagedWriteRefused
from tollgate.metering.pricing import Pricing, default_pricing
from tollgate.providers.base import ImageRequest, ImageResult
from tollgate.providers.catalog import ProviderCatalog
from tollgate.providers.mock import MockProvider
from tollgate.templates.models import PUBLIC_OWNER, TemplateUse
from tollgate.usage.log import UsageLogEntry

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
ORG = "org_1"


@dataclass
class Staged:
    apply: Callable[[], None]
    count: int = 1

    def plus(self, other: Staged) -> Staged:
        def both() -> None:
            self.apply()
            other.apply()

        return Staged(both, self.count + other.count)


@dataclass
class FakeTemplateUses:
    """Counts uses as ``TemplateService`` does: staged for an org's template, after for a public one."""

    counted: list[tuple[str, int, str]] = field(default_factory=list)

    def stage_use(self, use: TemplateUse) -> Staged | None:
        if use.public:
            return None
        return Staged(lambda: self.counted.append((use.template_id, use.version, "staged")))

    def count_use(self, use: TemplateUse) -> None:
        if use.public:
            self.counted.append((use.template_id, use.version, "after"))


class MemoryJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, ImageJob] = {}
        self.logs: list[UsageLogEntry] = []

    def create(self, jobs: Sequence[ImageJob], batch: ImageBatch | None = None) -> None:
        for job in jobs:
            self.jobs[job.job_id] = job

    def get(self, org_id: str, job_id: str) -> ImageJob | None:
        return self.jobs.get(job_id)

    def get_many(self, org_id: str, job_ids: Sequence[str]) -> list[ImageJob]:
        return [self.jobs[j] for j in job_ids if j in self.jobs]

    def batch(self, org_id: str, batch_id: str) -> ImageBatch | None:
        return None

    def claim(self, org_id: str, job_id: str, now: datetime, lease_until: datetime) -> Claim:
        job = self.jobs.get(job_id)
        if job is None:
            return Claim(None, False)
        expired = job.status is JobStatus.PROCESSING and job.lease_until is not None and job.lease_until < now
        if job.status is JobStatus.PENDING or expired:
            job = replace(
                job, status=JobStatus.PROCESSING, lease_until=lease_until, attempts=job.attempts + 1
            )
            self.jobs[job_id] = job
            return Claim(job, True)
        return Claim(job, False)

    def retry_later(self, job: ImageJob, error: Mapping[str, Any], now: datetime) -> None:
        current = self.jobs[job.job_id]
        if current.status is JobStatus.PROCESSING and current.lease_until == job.lease_until:
            self.jobs[job.job_id] = replace(
                current, status=JobStatus.PENDING, lease_until=None, error=dict(error)
            )

    def _finish(self, job: ImageJob, log: UsageLogEntry) -> None:
        assert not self.jobs[job.job_id].status.is_final, "a final job moved again"
        self.jobs[job.job_id] = job
        self.logs.append(log)

    def stage_finish(self, job: ImageJob, log: UsageLogEntry, index: AssetIndex | None = None) -> Staged:
        return Staged(lambda: self._finish(job, log))

    def stage_new(
        self, job: ImageJob, log: UsageLogEntry, index: AssetIndex | None = None, reused: str | None = None
    ) -> Staged:
        raise AssertionError("the worker never writes new jobs")

    def fail(self, job: ImageJob, log: UsageLogEntry) -> bool:
        if self.jobs[job.job_id].status.is_final:
            return False
        self._finish(job, log)
        return True

    def find(self, org_id: str, digest: str, now: datetime) -> DedupHit | None:
        return None


class MemoryAssets:
    def __init__(self) -> None:
        self.objects_by_key: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.puts = 0

    def put_new(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        self.puts += 1
        if key in self.objects_by_key:
            return False
        self.objects_by_key[key] = (data, dict(metadata))
        return True

    def objects(self, prefix: str) -> list[StoredObject]:
        return [
            StoredObject(key, len(data), meta)
            for key, (data, meta) in sorted(self.objects_by_key.items())
            if key.startswith(prefix)
        ]

    def read(self, key: str, max_bytes: int) -> bytes | None:
        found = self.objects_by_key.get(key)
        return found[0] if found else None

    def url(self, key: str, ttl_seconds: int) -> str:
        return f"https://assets.example/{key}"

    def key_of_url(self, url: str) -> str | None:
        return url.removeprefix("https://assets.example/")


@dataclass
class FakeMetering:
    """Holds one reservation per job; settles and releases once, calling ``attach`` as the
    real service does (inside the move: a refused staged write undoes the whole move)."""

    status: dict[str, ReservationStatus] = field(default_factory=dict)
    settled: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    refuse_staged: bool = False
    conflict_on_settle: bool = False

    @property
    def pricing(self) -> Pricing:
        return default_pricing()

    def reservation(self, org_id: str, reservation_id: str) -> Reservation:
        charge = Charge("image", "cost_plus", 1_000, 1_300, 0)
        return Reservation(
            reservation_id,
            org_id,
            "ann",
            "image",
            self.status.get(reservation_id, ReservationStatus.HELD),
            1_300,
            charge,
            (),
            (),
            0,
            NOW,
        )

    def settle(
        self,
        org_id: str,
        reservation_id: str,
        actual: Usage,
        attach: Callable[[Settlement], Any] | None = None,
    ) -> Settlement:
        if self.conflict_on_settle or self.status.get(reservation_id) is ReservationStatus.RELEASED:
            raise Conflict("released")
        charge = self.pricing.charge("image", actual)
        settlement = Settlement(reservation_id, org_id, charge, 1_300, charge.credits, 0, 0, 0, 0, NOW)
        if self.status.get(reservation_id) is ReservationStatus.SETTLED:
            return settlement
        staged = attach(settlement) if attach else None
        if self.refuse_staged:
            raise StagedWriteRefused("refused")
        if staged is not None:
            staged.apply()
        self.status[reservation_id] = ReservationStatus.SETTLED
        self.settled.append(reservation_id)
        return settlement

    def release(
        self, org_id: str, reservation_id: str, attach: Callable[[Release], Any] | None = None
    ) -> Release:
        released = Release(reservation_id, org_id, 1_300, 0, 0, NOW)
        if self.status.get(reservation_id) is ReservationStatus.RELEASED:
            return released
        staged = attach(released) if attach else None
        if staged is not None:
            staged.apply()
        self.status[reservation_id] = ReservationStatus.RELEASED
        self.released.append(reservation_id)
        return released


class CountingMock(MockProvider):
    def __init__(self) -> None:
        super().__init__(sleep=lambda _: None)
        self.calls = 0

    def generate_images(self, request: ImageRequest) -> ImageResult:
        self.calls += 1
        return super().generate_images(request)


@dataclass
class World:
    jobs: MemoryJobs
    assets: MemoryAssets
    metering: FakeMetering
    provider: CountingMock
    clock: FixedClock
    worker: ImageWorker

    def job(self, job_id: str = "img_1", **spec: Any) -> ImageJob:
        job = ImageJob(
            job_id=job_id,
            org_id=ORG,
            user="ann",
            key_id="key_1",
            status=JobStatus.PENDING,
            spec=ImageSpec(prompt="a fox", model="mock/image", size="256x256", quality="standard", **spec),
            feature="image",
            model="mock/image",
            provider="mock",
            prompt_hash="h1",
            created_at=NOW,
            updated_at=NOW,
        )
        self.jobs.create([job])
        return job

    def deliver(self, job_id: str = "img_1", receive_count: int = 1) -> Outcome:
        return self.worker.process(Delivery(JobMessage(ORG, job_id), receive_count, 60))


@pytest.fixture
def world() -> World:
    jobs, assets, metering, provider = MemoryJobs(), MemoryAssets(), FakeMetering(), CountingMock()
    clock = FixedClock(NOW)
    worker = ImageWorker(
        ProviderCatalog([provider]), metering, jobs, assets, load_models(), max_receive_count=5, clock=clock
    )
    return World(jobs, assets, metering, provider, clock, worker)


def test_a_delivery_makes_the_image_stores_it_and_settles_the_job(world: World) -> None:
    world.job()
    assert world.deliver() is Outcome.COMPLETED
    job = world.jobs.jobs["img_1"]
    assert (job.status, job.credits_charged, job.cost_micro_usd) == (JobStatus.COMPLETED, 1_300, 1_000)
    assert [a.key for a in job.assets] == [f"assets/{ORG}/img_1/0.png"]
    assert world.metering.settled == ["img_1"]
    assert [log.status.value for log in world.jobs.logs] == ["completed"]


def test_a_final_job_delivered_again_is_acknowledged_without_doing_anything(world: World) -> None:
    world.job()
    world.deliver()
    assert world.deliver() is Outcome.DUPLICATE
    assert world.provider.calls == 1
    assert world.metering.settled == ["img_1"]


def test_images_an_earlier_attempt_stored_are_settled_without_calling_the_provider_again(
    world: World,
) -> None:
    # Given an attempt that stored the image and died before settling (its lease expired)
    world.job()
    world.metering.refuse_staged = True  # (the first attempt's settle never lands)
    with pytest.raises(RetryLater):
        world.deliver()
    world.metering.refuse_staged = False
    world.jobs.jobs["img_1"] = replace(world.jobs.jobs["img_1"], lease_until=NOW - timedelta(seconds=1))
    # When the message comes back
    assert world.deliver(receive_count=2) is Outcome.COMPLETED
    # Then the stored image is the asset: the provider was called once in all
    assert world.provider.calls == 1
    assert world.metering.settled == ["img_1"]


def test_a_job_held_by_a_live_lease_is_left_to_its_worker(world: World) -> None:
    world.job()
    world.jobs.claim(ORG, "img_1", NOW, NOW + timedelta(minutes=5))
    with pytest.raises(RetryLater, match="another worker"):
        world.deliver()
    assert world.provider.calls == 0


def test_a_transient_failure_puts_the_job_back_and_asks_for_a_retry(world: World) -> None:
    world.job(metadata={"mock": {"fail": "error"}})
    with pytest.raises(RetryLater, match="tried again"):
        world.deliver(receive_count=1)
    job = world.jobs.jobs["img_1"]
    assert (job.status, job.lease_until) == (JobStatus.PENDING, None)
    assert world.metering.released == []


def test_the_last_receive_releases_the_job_and_still_reports_it_for_the_dlq(world: World) -> None:
    world.job(metadata={"mock": {"fail": "timeout"}})
    with pytest.raises(RetryLater, match="for good"):
        world.deliver(receive_count=5)
    job = world.jobs.jobs["img_1"]
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error["status"] == 504
    assert world.metering.released == ["img_1"]
    assert [log.status.value for log in world.jobs.logs] == ["failed"]


def test_a_request_the_provider_refuses_fails_at_once_and_is_acknowledged(world: World) -> None:
    world.job(metadata={"mock": {"fail": "invalid"}})
    assert world.deliver(receive_count=1) is Outcome.FAILED
    assert world.metering.released == ["img_1"]


def test_a_job_whose_hold_was_swept_fails_without_a_provider_call(world: World) -> None:
    world.job()
    world.metering.status["img_1"] = ReservationStatus.RELEASED
    assert world.deliver() is Outcome.FAILED
    job = world.jobs.jobs["img_1"]
    assert job.error is not None
    assert job.error["code"] == "reservation_expired"
    assert world.provider.calls == 0


def test_a_hold_swept_while_the_job_ran_fails_the_job_as_expired(world: World) -> None:
    world.job()
    world.metering.conflict_on_settle = True
    assert world.deliver() is Outcome.FAILED
    assert world.jobs.jobs["img_1"].status is JobStatus.FAILED
    assert len(world.jobs.logs) == 1


def test_a_message_for_no_job_is_dropped(world: World) -> None:
    assert world.deliver("img_missing") is Outcome.UNKNOWN_JOB


def test_a_template_job_counts_one_use_with_its_settlement_and_a_failed_one_none(world: World) -> None:
    uses = FakeTemplateUses()
    worker = ImageWorker(
        ProviderCatalog([world.provider]),
        world.metering,
        world.jobs,
        world.assets,
        load_models(),
        max_receive_count=5,
        clock=world.clock,
        templates=uses,
    )

    def deliver(job_id: str) -> Outcome:
        return worker.process(Delivery(JobMessage(ORG, job_id), 1, 60))

    # An org's own template: counted inside the settlement's move
    own = replace(world.job("img_own"), template=TemplateUse(ORG, "tpl_own", 2))
    world.jobs.create([own])
    assert deliver("img_own") is Outcome.COMPLETED
    assert uses.counted == [("tpl_own", 2, "staged")]
    (entry,) = world.jobs.logs
    assert (entry.template_id, entry.template_version) == ("tpl_own", 2)
    # A public template: counted right after the settlement
    public = replace(world.job("img_pub"), template=TemplateUse(PUBLIC_OWNER, "tpl_pub", 1))
    world.jobs.create([public])
    assert deliver("img_pub") is Outcome.COMPLETED
    assert uses.counted[1:] == [("tpl_pub", 1, "after")]
    # A job that fails for good: nothing counted
    failing = replace(
        world.job("img_bad", metadata={"mock": {"fail": "invalid"}}), template=TemplateUse(ORG, "tpl_own", 2)
    )
    world.jobs.create([failing])
    assert deliver("img_bad") is Outcome.FAILED
    # A settlement whose staged writes are refused (the job finished elsewhere): nothing counted
    world.metering.refuse_staged = True
    refused = replace(world.job("img_raced"), template=TemplateUse(ORG, "tpl_own", 2))
    world.jobs.create([refused])
    with pytest.raises(RetryLater):
        deliver("img_raced")
    assert len(uses.counted) == 2
