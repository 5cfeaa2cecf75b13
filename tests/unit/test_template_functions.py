"""Every function of template.yaml has what the briefing asks of it: a log group with retention,
and a sample event in events/ named after its code folder, shaped as its trigger sends it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tollgate_local.template import default_template, function_ids, function_properties

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("function_id", function_ids(default_template()))
def test_each_function_has_a_log_group_with_retention(function_id: str) -> None:
    resources = default_template()["Resources"]
    group = resources.get(f"{function_id}LogGroup")
    assert group is not None, f"{function_id} has no {function_id}LogGroup"
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function_id}}}"}
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("function_id", function_ids(default_template()))
def test_each_function_has_a_sample_event(function_id: str) -> None:
    template = default_template()
    folder = str(function_properties(template, function_id)["CodeUri"]).strip("/").split("/")[-1]
    event = json.loads((REPO_ROOT / "events" / f"{folder}.json").read_text())
    events = function_properties(template, function_id).get("Events") or {}
    api_routes = {
        (str(e["Properties"]["Method"]).upper(), str(e["Properties"]["Path"]))
        for e in events.values()
        if e.get("Type") == "Api"
    }
    if api_routes:
        # An API event of one of the function's own routes
        assert (event["httpMethod"], event["resource"]) in api_routes
        assert event["requestContext"]["authorizer"]["key_id"]
