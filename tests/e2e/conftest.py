"""End-to-end fixtures: the real local runtime (``python -m tollgate_local``) as a subprocess,
moto in server mode, and HTTP with ``httpx``, exactly as a developer runs it.

The runtime starts once per session on free ports with its state in a temporary folder; the
fixture waits (60 s at most) for ``local.json`` and ``GET /v1/health``, and always stops the
process, even when a test or the start fails. Its output is kept in ``runtime.log`` beside
``local.json`` and shown when the start fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tollgate_local.template import REPO_ROOT

START_TIMEOUT = 60.0
PYTHONPATH = os.pathsep.join(str(REPO_ROOT / part) for part in ("layers/tollgate", "local", "."))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class LocalRuntime:
    """The running runtime: what ``local.json`` says, and the moto server behind it."""

    base_url: str
    admin_key: str
    demo_org_id: str
    demo_key: str
    moto_endpoint: str
    state_dir: Path

    def aws(self, service: str) -> Any:
        """A boto3 client on the runtime's moto server (to inspect what the functions stored)."""
        return boto3.client(
            service,
            endpoint_url=self.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _log_tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _wait_until_ready(process: subprocess.Popen[bytes], state_file: Path, log: Path) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the local runtime exited with {process.returncode}:\n{_log_tail(log)}")
        if state_file.exists():
            state: dict[str, str] = json.loads(state_file.read_text())
            try:
                health = httpx.get(f"{state['base_url']}/v1/health", timeout=5, trust_env=False)
                if health.status_code == 200:
                    return state
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    pytest.fail(f"the local runtime was not ready within {START_TIMEOUT:.0f} s:\n{_log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    """``python -m tollgate_local`` on free ports, ready, for the whole session."""
    state_dir = tmp_path_factory.mktemp("tollgate-local")
    log = state_dir / "runtime.log"
    moto_port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "TOLLGATE_PORT": str(_free_port()),
        "TOLLGATE_MOTO_PORT": str(moto_port),
        "TOLLGATE_STATE_DIR": str(state_dir),
        "PYTHONUNBUFFERED": "1",
        # A failed SQS message comes back after 1 s, not the queue's visibility timeout
        # (18 minutes for image jobs): the DLQ test sees all five receives.
        "TOLLGATE_SQS_RETRY_SECONDS": "1",
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tollgate_local"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        state = _wait_until_ready(process, state_dir / "local.json", log)
        yield LocalRuntime(
            base_url=state["base_url"],
            admin_key=state["admin_key"],
            demo_org_id=state["demo_org_id"],
            demo_key=state["demo_key"],
            moto_endpoint=f"http://127.0.0.1:{moto_port}",
            state_dir=state_dir,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def http(runtime: LocalRuntime) -> Iterator[httpx.Client]:
    """An HTTP client on the runtime's base URL (no proxies from the environment)."""
    with httpx.Client(base_url=runtime.base_url, timeout=30, trust_env=False) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is RFC 9457 problem JSON with that status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:tollgate:problem:{code}"
    assert body["title"]
    return body


@dataclass(frozen=True)
class Tenant:
    org_id: str
    owner_key: str
    owner_key_id: str
    member_key: str
    member_key_id: str


@pytest.fixture(scope="session")
def issued_keys(runtime: LocalRuntime) -> list[str]:
    """Every plain key handed out in this session (the storage scan looks for each)."""
    return [runtime.admin_key, runtime.demo_key]


@pytest.fixture(scope="session")
def make_tenant(http: httpx.Client, runtime: LocalRuntime, issued_keys: list[str]) -> Any:
    """Create an org through the API with the admin key, with an owner key and a member key."""

    def make(name: str = "Acme", plan: str = "starter") -> Tenant:
        org = http.post("/v1/orgs", json={"name": name, "plan": plan}, headers=bearer(runtime.admin_key))
        assert org.status_code == 201, org.text
        org_id = org.json()["org_id"]
        keys = {}
        for role in ("owner", "member"):
            made = http.post(
                f"/v1/orgs/{org_id}/keys",
                json={"name": f"{role} key", "user": f"{role}-1", "role": role},
                headers=bearer(runtime.admin_key),
            )
            assert made.status_code == 201, made.text
            keys[role] = made.json()
            issued_keys.append(keys[role]["key"])
        return Tenant(
            org_id=org_id,
            owner_key=keys["owner"]["key"],
            owner_key_id=keys["owner"]["key_id"],
            member_key=keys["member"]["key"],
            member_key_id=keys["member"]["key_id"],
        )

    return make
