"""The local runtime's SQS event sources: the event Lambda sends, partial batch responses,
and the redrive to the DLQ (moto's, through the queue's RedrivePolicy).

The queue is made by ``create_stack`` from a small template dict, in moto in-process; the
function is a fake invoker (a Python callable), so no process is spawned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tollgate_local.gateway import FunctionFailed
from tollgate_local.resources import ACCOUNT, REGION, CreatedStack, create_stack
from tollgate_local.sqs import QueuePoller, SqsEventSource, messages_to_delete, sqs_event_sources

TEMPLATE: dict[str, Any] = {
    "Resources": {
        "JobsQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": 30,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["JobsDlq", "Arn"]},
                    "maxReceiveCount": 2,
                },
            },
        },
        "JobsDlq": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "WorkerFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/worker/",
                "Handler": "app.lambda_handler",
                "Events": {
                    "Jobs": {
                        "Type": "SQS",
                        "Properties": {
                            "Queue": {"Fn::GetAtt": ["JobsQueue", "Arn"]},
                            "BatchSize": 5,
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        },
                    },
                    "Api": {"Type": "Api", "Properties": {"Path": "/x", "Method": "GET"}},
                },
            },
        },
        "PlainFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/plain/",
                "Handler": "app.lambda_handler",
                "Events": {"Jobs": {"Type": "SQS", "Properties": {"Queue": "arn:aws:sqs:us-east-1:1:other"}}},
            },
        },
    }
}


class FakeFunction:
    """An invoker that records events and answers (or fails) as told."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: Any = None
        self.fail = False
        self.called = threading.Event()

    def __call__(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        self.called.set()
        if self.fail:
            raise FunctionFailed("RuntimeError: boom")
        answer = self.answer(event) if callable(self.answer) else self.answer
        return answer if isinstance(answer, dict) else {"result": answer}


@pytest.fixture
def created(aws_credentials: None) -> Iterator[CreatedStack]:
    with mock_aws():
        yield create_stack(TEMPLATE, boto3.session.Session(region_name=REGION))


@pytest.fixture
def sqs(created: CreatedStack) -> Any:
    return boto3.client("sqs", region_name=REGION)


def _source(created: CreatedStack) -> SqsEventSource:
    (source,) = [
        s for s in sqs_event_sources(TEMPLATE, created.resolver) if s.function_id == "WorkerFunction"
    ]
    return source


def _count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_event_sources_come_from_the_template(created: CreatedStack) -> None:
    sources = {s.function_id: s for s in sqs_event_sources(TEMPLATE, created.resolver)}
    worker = sources["WorkerFunction"]
    assert worker.queue_arn == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{created.names['JobsQueue']}"
    assert worker.batch_size == 5
    assert worker.report_batch_item_failures is True
    plain = sources["PlainFunction"]
    assert plain.queue_name == "other"
    assert plain.batch_size == 10
    assert plain.report_batch_item_failures is False


@pytest.mark.parametrize(
    ("result", "report", "deleted"),
    [
        (None, True, []),  # the function failed: nothing
        (None, False, []),
        ({"result": None}, False, ["a", "b", "c"]),
        ({"result": None}, True, ["a", "b", "c"]),  # no batchItemFailures: all succeeded
        ({"batchItemFailures": []}, True, ["a", "b", "c"]),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, True, ["a", "c"]),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, False, ["a", "b", "c"]),  # not opted in
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, True, []),  # unknown id: whole batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, True, []),
        ({"batchItemFailures": [{}]}, True, []),
        ({"batchItemFailures": "b"}, True, []),
    ],
)
def test_which_messages_are_deleted(result: dict[str, Any] | None, report: bool, deleted: list[str]) -> None:
    assert messages_to_delete(["a", "b", "c"], result, report) == deleted


def test_a_batch_is_a_real_sqs_event_and_only_reported_failures_stay(created: CreatedStack, sqs: Any) -> None:
    # Given three messages, one with an attribute
    url = created.resolver.refs["JobsQueue"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="one",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "image"}},
    )
    sqs.send_message(QueueUrl=url, MessageBody="two")
    sqs.send_message(QueueUrl=url, MessageBody="three")
    function = FakeFunction()
    function.answer = lambda event: {
        "batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "two"
        ]
    }
    poller = QueuePoller(_source(created), sqs, function, wait_seconds=0)
    # When
    received = 0
    while received < 3:
        got = poller.poll_once()
        assert got, "the queue ran dry before the three messages were received"
        received += got
    # Then the function saw SQS records as Lambda builds them
    records = [record for event in function.events for record in event["Records"]]
    assert sorted(r["body"] for r in records) == ["one", "three", "two"]
    first = next(r for r in records if r["body"] == "one")
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == _source(created).queue_arn
    assert first["awsRegion"] == REGION
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in first["attributes"]
    assert first["messageAttributes"]["kind"] == {
        "stringValue": "image",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert first["receiptHandle"]
    assert first["md5OfBody"]
    # and only the reported failure is left in the queue (in flight until its timeout)
    assert _count(sqs, url) == 1


def test_a_failed_invocation_deletes_nothing(created: CreatedStack, sqs: Any) -> None:
    url = created.resolver.refs["JobsQueue"]
    sqs.send_message(QueueUrl=url, MessageBody="one")
    function = FakeFunction()
    function.fail = True
    QueuePoller(_source(created), sqs, function, wait_seconds=0).poll_once()
    assert len(function.events) == 1
    assert _count(sqs, url) == 1


def test_moto_moves_a_message_to_the_dlq_after_max_receive_count(created: CreatedStack, sqs: Any) -> None:
    # Given a queue with maxReceiveCount 2, and a function that always fails; failed messages
    # are made visible again at once (instead of after the 30 s visibility timeout)
    url = created.resolver.refs["JobsQueue"]
    dlq = created.resolver.refs["JobsDlq"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    function = FakeFunction()
    function.fail = True
    poller = QueuePoller(_source(created), sqs, function, wait_seconds=0, failed_visibility_seconds=0)
    # When the poller keeps receiving it
    for _ in range(4):
        poller.poll_once()
    # Then the function saw it exactly maxReceiveCount times, and it now sits in the DLQ
    counts = [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in function.events]
    assert counts == ["1", "2"]
    assert _count(sqs, url) == 0
    moved = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in moved] == ["poison"]


def test_the_poller_thread_delivers_and_stops(created: CreatedStack, sqs: Any) -> None:
    url = created.resolver.refs["JobsQueue"]
    function = FakeFunction()
    batches: list[tuple[int, int]] = []
    poller = QueuePoller(
        _source(created),
        sqs,
        function,
        wait_seconds=1,
        on_batch=lambda s, got, deleted: batches.append((got, deleted)),
    )
    poller.start()
    try:
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        assert function.called.wait(10)
    finally:
        poller.stop(timeout=5)
    assert function.events[0]["Records"][0]["body"] == "hello"
    assert batches == [(1, 1)]
    assert _count(sqs, url) == 0
