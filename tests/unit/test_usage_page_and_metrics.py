"""The dashboard page's security policy and the request metrics (S9). No AWS."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools import Metrics
from msgspec.structs import replace

from tests.unit.test_usage_figures import entry, failed
from tollgate.api.pages import StaticPage, content_security_policy
from tollgate.usage.metrics import RequestMetrics

PAGE = Path(__file__).resolve().parents[2] / "functions" / "usage" / "dashboard.html"


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_allows_exactly_the_pages_inline_script_and_style() -> None:
    html = PAGE.read_text()
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    policy = dict(part.split(" ", 1) for part in content_security_policy(html).split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == sha256(script)
    assert policy["style-src"] == sha256(style)
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in content_security_policy(html)


def test_the_page_loads_nothing_from_anywhere_else() -> None:
    html = PAGE.read_text()
    # No element fetches anything: no src, no stylesheet link, no import, no external URL
    # (the SVG namespace is a name, never fetched).
    assert not re.search(r"\ssrc\s*=", html)
    assert not re.search(r"<link[^>]+stylesheet", html)
    assert "@import" not in html
    assert "url(" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}
    # And no inline style attributes or handlers, which the policy would block
    assert not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)


def test_the_page_is_served_with_its_security_headers() -> None:
    response = StaticPage(PAGE).response()
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == content_security_policy(PAGE.read_text())
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


# -- metrics ------------------------------------------------------------------------------------


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metrics]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics = Metrics(namespace="TollgateTest", service="generate")
    metrics.clear_metrics()
    yield metrics
    metrics.clear_metrics()


def blobs(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and "_aws" in line]


def test_a_request_emits_its_metrics_with_service_and_feature(
    sink: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the metrics of a cached chat answer and of a provider error
    recorder = RequestMetrics(sink, ["chat", "embedding"])
    recorder.record(entry(cache_hit=True, latency_ms=12, credits=0, cost_micro_usd=0))
    recorder.record(replace(failed("provider_error"), latency_ms=900))
    # When the handler ends
    sink.flush_metrics()
    # Then one EMF blob carries both requests under the service and feature dimensions
    (blob,) = blobs(capsys.readouterr().out)
    directive = blob["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
    assert directive["Namespace"] == "TollgateTest"
    assert sorted(directive["Dimensions"][0]) == ["feature", "service"]
    assert (blob["service"], blob["feature"]) == ("generate", "chat")
    assert blob["Requests"] == [1.0, 1.0]
    assert blob["CacheHits"] == [1.0, 0.0]
    assert blob["ProviderErrors"] == [0.0, 1.0]
    assert blob["Refusals"] == [0.0, 0.0]
    assert blob["LatencyMs"] == [12.0]  # successes only
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"ProviderCostMicroUSD", "CreditUnitsCharged", "Tokens", "Failures"} <= names


def test_an_unknown_feature_is_other_and_features_never_share_a_blob(
    sink: Metrics, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = RequestMetrics(sink, ["chat", "embedding"])
    recorder.record(entry(feature="chat"))
    recorder.record(failed("rate_limited"))  # feature chat too
    recorder.record(entry(feature="made-up-by-a-client"))
    sink.flush_metrics()
    first, second = blobs(capsys.readouterr().out)
    assert (first["feature"], first["Requests"], first["Refusals"]) == ("chat", [1.0, 1.0], [0.0, 1.0])
    assert (second["feature"], second["Requests"]) == ("other", [1.0])
