"""Image jobs, batches and the asset dedup index in the Tollgate table (``ImageJobStore``).

Items (see ``docs/images.md``):

- job:   ``pk = ORG#<org>#IMG#<job id>``, ``sk = JOB``: ``status``, ``lease_until`` (epoch ms,
  while processing), ``attempts``, ``usage_count`` and ``last_error`` as attributes (conditions
  and counters need them); everything else in one JSON ``body``.
- batch: ``pk = ORG#<org>#IMGBATCH#<batch id>``, ``sk = BATCH``: its job ids.
- dedup index entry: ``pk = ORG#<org>#ASSETHASH#<hash>``, ``sk = ASSET``: the job whose assets
  answer that hash, the assets themselves (a hit is one read), ``expires_at`` (exact) and the
  table TTL ``expire_at``.

Every status move is a conditional write on the current status; the moves that go with money
(``stage_finish``, ``stage_new``) are staged into the metering transaction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from tollgate.aws.dynamodb import (
    ConditionFailed,
    DynamoStagedWrites,
    DynamoTable,
    Item,
    TransactionCancelled,
    Write,
    put,
    update,
)
from tollgate.aws.metering_store import batch_get_all
from tollgate.aws.usage_store import DynamoUsageLog
from tollgate.clock import epoch, parse_iso
from tollgate.errors import ServiceUnavailable
from tollgate.images.jobs import (
    Asset,
    AssetIndex,
    Claim,
    DedupHit,
    ImageBatch,
    ImageJob,
    ImageSpec,
    JobStatus,
)
from tollgate.providers.base import ImageFormat
from tollgate.templates.models import TemplateUse
from tollgate.usage.log import UsageLogEntry

JOB_SK = "JOB"
BATCH_SK = "BATCH"
INDEX_SK = "ASSET"
MAX_TRANSACTION = 100
_FINAL = (JobStatus.COMPLETED.value, JobStatus.FAILED.value)


def job_pk(org_id: str, job_id: str) -> str:
    return f"ORG#{org_id}#IMG#{job_id}"


def batch_pk(org_id: str, batch_id: str) -> str:
    return f"ORG#{org_id}#IMGBATCH#{batch_id}"


def index_pk(org_id: str, digest: str) -> str:
    return f"ORG#{org_id}#ASSETHASH#{digest}"


def _time(moment: datetime | None) -> str | None:
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None
    )


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _asset_json(asset: Asset) -> dict[str, Any]:
    return {
        "key": asset.key,
        "format": asset.format,
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.bytes,
        "revised_prompt": asset.revised_prompt,
        "seed": asset.seed,
    }


def _asset_of(raw: Mapping[str, Any]) -> Asset:
    return Asset(
        key=str(raw["key"]),
        format=cast(ImageFormat, raw["format"]),
        width=int(raw["width"]),
        height=int(raw["height"]),
        bytes=int(raw["bytes"]),
        revised_prompt=raw.get("revised_prompt"),
        seed=raw.get("seed"),
    )


def _body(job: ImageJob) -> str:
    spec = job.spec
    return _dumps(
        {
            "user": job.user,
            "key_id": job.key_id,
            "spec": {
                "prompt": spec.prompt,
                "model": spec.model,
                "size": spec.size,
                "quality": spec.quality,
                "style": spec.style,
                "n": spec.n,
                "negative_prompt": spec.negative_prompt,
                "seed": spec.seed,
                "metadata": dict(spec.metadata),
            },
            "feature": job.feature,
            "model": job.model,
            "provider": job.provider,
            "prompt_hash": job.prompt_hash,
            "context_hash": job.context_hash,
            "context": dict(job.context) if job.context is not None else None,
            "entity": dict(job.entity) if job.entity is not None else None,
            "keep_prompt": job.keep_prompt,
            "cache_ttl_seconds": job.cache_ttl_seconds,
            "estimated_credits": job.estimated_credits,
            "started_at": _time(job.started_at),
            "completed_at": _time(job.completed_at),
            "assets": [_asset_json(asset) for asset in job.assets],
            "cached": job.cached,
            "source_job_id": job.source_job_id,
            "cost_micro_usd": job.cost_micro_usd,
            "credits_charged": job.credits_charged,
            "error": dict(job.error) if job.error is not None else None,
            "fallbacks": [dict(f) for f in job.fallbacks],
            "findings": [dict(f) for f in job.findings],
            "synchronous": job.synchronous,
            "template": job.template.as_json() if job.template is not None else None,
        }
    )


def job_to_item(job: ImageJob) -> Item:
    item: Item = {
        "pk": job_pk(job.org_id, job.job_id),
        "sk": JOB_SK,
        "type": "image_job",
        "job_id": job.job_id,
        "org_id": job.org_id,
        "status": job.status.value,
        "attempts": job.attempts,
        "usage_count": job.usage_count,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "body": _body(job),
    }
    if job.batch_id:
        item["batch_id"] = job.batch_id
    if job.lease_until is not None:
        item["lease_until"] = _millis(job.lease_until)
    return item


def job_of(item: Item) -> ImageJob:
    body = json.loads(item["body"])
    spec = body["spec"]
    lease = item.get("lease_until")
    last_error = item.get("last_error")
    error = body.get("error")
    if error is None and last_error:
        error = json.loads(last_error)
    return ImageJob(
        job_id=str(item["job_id"]),
        org_id=str(item["org_id"]),
        user=str(body["user"]),
        key_id=str(body.get("key_id", "")),
        status=JobStatus(item["status"]),
        spec=ImageSpec(
            prompt=spec.get("prompt"),
            model=str(spec["model"]),
            size=str(spec["size"]),
            quality=spec.get("quality"),
            style=spec.get("style"),
            n=int(spec.get("n", 1)),
            negative_prompt=spec.get("negative_prompt"),
            seed=spec.get("seed"),
            metadata=spec.get("metadata") or {},
        ),
        feature=str(body["feature"]),
        model=str(body["model"]),
        provider=str(body["provider"]),
        prompt_hash=str(body["prompt_hash"]),
        created_at=parse_iso(str(item["created_at"])),
        updated_at=parse_iso(str(item["updated_at"])),
        context_hash=body.get("context_hash"),
        context=body.get("context"),
        entity=body.get("entity"),
        batch_id=item.get("batch_id"),
        keep_prompt=bool(body.get("keep_prompt", True)),
        cache_ttl_seconds=body.get("cache_ttl_seconds"),
        estimated_credits=int(body.get("estimated_credits", 0)),
        attempts=int(item.get("attempts", 0)),
        lease_until=datetime.fromtimestamp(int(lease) / 1000, UTC) if lease is not None else None,
        started_at=parse_iso(body["started_at"]) if body.get("started_at") else None,
        completed_at=parse_iso(body["completed_at"]) if body.get("completed_at") else None,
        assets=tuple(_asset_of(raw) for raw in body.get("assets") or []),
        cached=bool(body.get("cached", False)),
        source_job_id=body.get("source_job_id"),
        usage_count=int(item.get("usage_count", 0)),
        cost_micro_usd=int(body.get("cost_micro_usd", 0)),
        credits_charged=int(body.get("credits_charged", 0)),
        error=error,
        fallbacks=tuple(body.get("fallbacks") or ()),
        findings=tuple(body.get("findings") or ()),
        synchronous=bool(body.get("synchronous", False)),
        template=TemplateUse.from_json(body["template"]) if body.get("template") else None,
    )


def _batch_item(batch: ImageBatch) -> Item:
    return {
        "pk": batch_pk(batch.org_id, batch.batch_id),
        "sk": BATCH_SK,
        "type": "image_batch",
        "batch_id": batch.batch_id,
        "org_id": batch.org_id,
        "user": batch.user,
        "job_ids": list(batch.job_ids),
        "created_at": _time(batch.created_at),
        "estimated_credits": batch.estimated_credits,
    }


def _batch_of(item: Item) -> ImageBatch:
    return ImageBatch(
        batch_id=str(item["batch_id"]),
        org_id=str(item["org_id"]),
        user=str(item["user"]),
        job_ids=tuple(str(j) for j in item.get("job_ids") or ()),
        created_at=parse_iso(str(item["created_at"])),
        estimated_credits=int(item.get("estimated_credits", 0)),
    )


def _finish_write(job: ImageJob) -> Write:
    """The job becomes final, only from a status that is not final (never twice)."""
    return update(
        {"pk": job_pk(job.org_id, job.job_id), "sk": JOB_SK},
        "SET #status = :status, body = :body, updated_at = :updated REMOVE lease_until, last_error",
        condition="attribute_exists(pk) AND NOT #status IN (:completed, :failed)",
        names={"#status": "status"},
        values={
            ":status": job.status.value,
            ":body": _body(job),
            ":updated": _time(job.updated_at),
            ":completed": _FINAL[0],
            ":failed": _FINAL[1],
        },
    )


class DynamoImageJobStore:
    """``ImageJobStore`` over the Tollgate table."""

    def __init__(self, table: DynamoTable, usage_log: DynamoUsageLog) -> None:
        self._table = table
        self._usage_log = usage_log

    # -- writes of new jobs ----------------------------------------------------------------

    def create(self, jobs: Sequence[ImageJob], batch: ImageBatch | None = None) -> None:
        writes = [put(job_to_item(job), "attribute_not_exists(pk)") for job in jobs]
        if batch is not None:
            writes.append(put(_batch_item(batch), "attribute_not_exists(pk)"))  # last: a batch has its jobs
        for start in range(0, len(writes), MAX_TRANSACTION):
            try:
                self._table.transact(writes[start : start + MAX_TRANSACTION])
            except TransactionCancelled as cancelled:
                # Ids are new and random: a refusal is DynamoDB's, never an existing job.
                raise ServiceUnavailable(
                    f"The jobs could not be stored ({cancelled.reasons[:3]}); retry shortly",
                    headers={"Retry-After": "1"},
                ) from None

    # -- reads -----------------------------------------------------------------------------

    def get(self, org_id: str, job_id: str) -> ImageJob | None:
        item = self._table.get(job_pk(org_id, job_id), JOB_SK)
        return job_of(item) if item else None

    def get_many(self, org_id: str, job_ids: Sequence[str]) -> list[ImageJob]:
        keys = [{"pk": job_pk(org_id, job_id), "sk": JOB_SK} for job_id in job_ids]
        found = batch_get_all(self._table, keys)
        return [job_of(found[(key["pk"], JOB_SK)]) for key in keys if (key["pk"], JOB_SK) in found]

    def batch(self, org_id: str, batch_id: str) -> ImageBatch | None:
        item = self._table.get(batch_pk(org_id, batch_id), BATCH_SK)
        return _batch_of(item) if item else None

    def find(self, org_id: str, digest: str, now: datetime) -> DedupHit | None:
        item = self._table.get(index_pk(org_id, digest), INDEX_SK, consistent=False)
        if item is None or parse_iso(str(item["expires_at"])) <= now:
            return None
        return DedupHit(
            job_id=str(item["job_id"]),
            model=str(item["model"]),
            provider=str(item["provider"]),
            assets=tuple(_asset_of(raw) for raw in json.loads(item["assets"])),
        )

    # -- status moves ----------------------------------------------------------------------

    def claim(self, org_id: str, job_id: str, now: datetime, lease_until: datetime) -> Claim:
        try:
            item = self._table.update(
                job_pk(org_id, job_id),
                JOB_SK,
                "SET #status = :processing, lease_until = :lease, updated_at = :now, "
                "attempts = if_not_exists(attempts, :zero) + :one",
                condition="#status = :pending OR (#status = :processing AND lease_until < :now_ms)",
                names={"#status": "status"},
                values={
                    ":processing": JobStatus.PROCESSING.value,
                    ":pending": JobStatus.PENDING.value,
                    ":lease": _millis(lease_until),
                    ":now": _time(now),
                    ":now_ms": _millis(now),
                    ":zero": 0,
                    ":one": 1,
                },
            )
        except ConditionFailed as refused:
            return Claim(job_of(refused.item) if refused.item else None, claimed=False)
        return Claim(job_of(item), claimed=True)

    def retry_later(self, job: ImageJob, error: Mapping[str, Any], now: datetime) -> None:
        if job.lease_until is None:
            return
        # A refusal: another worker holds it now, or it is done; nothing of ours to give up.
        with contextlib.suppress(ConditionFailed):
            self._table.update(
                job_pk(job.org_id, job.job_id),
                JOB_SK,
                "SET #status = :pending, last_error = :error, updated_at = :now REMOVE lease_until",
                condition="#status = :processing AND lease_until = :lease",
                names={"#status": "status"},
                values={
                    ":pending": JobStatus.PENDING.value,
                    ":processing": JobStatus.PROCESSING.value,
                    ":lease": _millis(job.lease_until),
                    ":error": _dumps(dict(error)),
                    ":now": _time(now),
                },
            )

    def stage_finish(
        self, job: ImageJob, log: UsageLogEntry, index: AssetIndex | None = None
    ) -> DynamoStagedWrites:
        staged = DynamoStagedWrites((_finish_write(job),)) + self._usage_log.stage(log)
        return staged + self._index(job, index) if index is not None else staged

    def stage_new(
        self,
        job: ImageJob,
        log: UsageLogEntry,
        index: AssetIndex | None = None,
        reused: str | None = None,
    ) -> DynamoStagedWrites:
        staged = DynamoStagedWrites((put(job_to_item(job), "attribute_not_exists(pk)"),))
        staged += self._usage_log.stage(log)
        if index is not None:
            staged += self._index(job, index)
        if reused is not None:
            staged += DynamoStagedWrites(
                (
                    update(
                        {"pk": job_pk(job.org_id, reused), "sk": JOB_SK},
                        "ADD usage_count :one",
                        condition="attribute_exists(pk)",
                        values={":one": 1},
                    ),
                )
            )
        return staged

    def fail(self, job: ImageJob, log: UsageLogEntry) -> bool:
        try:
            self._table.transact([_finish_write(job), *self._usage_log.stage(log).writes])
        except TransactionCancelled as cancelled:
            if cancelled.reasons and cancelled.reasons[0] == "ConditionalCheckFailed":
                return False
            raise ServiceUnavailable("The job could not be updated; retry shortly") from None
        return True

    def _index(self, job: ImageJob, index: AssetIndex) -> DynamoStagedWrites:
        assets = _dumps([_asset_json(asset) for asset in job.assets])
        return DynamoStagedWrites(
            tuple(
                put(
                    {
                        "pk": index_pk(job.org_id, digest),
                        "sk": INDEX_SK,
                        "type": "image_asset_index",
                        "job_id": job.job_id,
                        "model": job.model,
                        "provider": job.provider,
                        "assets": assets,
                        "expires_at": _time(index.expires_at),
                        "expire_at": epoch(index.expires_at),
                    }
                )
                for digest in index.hashes
            )
        )
