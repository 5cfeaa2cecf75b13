"""The image worker: the SQS event source of the image jobs queue (S7).

Powertools' batch processing with partial batch responses: each record is one delivery of one
job's message, handled by ``ImageWorker``; a record whose job must be tried again is reported in
``batchItemFailures`` and only those come back (the queue's ``maxReceiveCount`` then moves a
message that keeps failing to the DLQ). Duplicate deliveries are acknowledged without doing
anything: the job's state, not the SQS message id, decides.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.images.jobs import message_of
from tollgate.images.worker import Delivery, Outcome, lease_of
from tollgate.usage.metrics import metrics

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
# A batch whose every record failed is answered as such (all in batchItemFailures) rather than
# as a failed invocation: the same retries, without counting as a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> str:
    """One delivery; raises (``RetryLater`` or any failure) to have it delivered again.
    (Powertools passes ``lambda_context`` to a record handler that names it.)"""
    message = message_of(record.body)
    logger.set_correlation_id(message.job_id if message else record.message_id)
    if message is None:
        logger.warning("a message that is not an image job; dropped", extra={"message_id": record.message_id})
        return Outcome.UNKNOWN_JOB.value
    receive_count = int(record.attributes.approximate_receive_count or 1)
    outcome = services.image_worker().process(
        Delivery(message, receive_count, lease_of(lambda_context.get_remaining_time_in_millis()))
    )
    logger.info(
        "image job delivery handled",
        extra={"job_id": message.job_id, "outcome": outcome.value, "receive_count": receive_count},
    )
    return outcome.value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics  # each job's metrics (tollgate.usage.metrics), emitted as it was logged
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # {"batchItemFailures": [{"itemIdentifier": <message id>}, ...]}: only those come back.
    return dict(
        process_partial_response(
            event=event, record_handler=handle_record, processor=processor, context=context
        )
    )
