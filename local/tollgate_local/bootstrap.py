"""What the local runtime creates on start (S10): the bootstrap admin key, a demo org on plan
``starter`` with an owner key and promo credits, the starter templates (S8), and
``.tollgate/local.json``.

The admin key is made as an operator makes it in AWS (its HMAC written to the template's SSM
parameter); the demo org and its key are made through the runtime's own HTTP API, so a start
proves the whole path: gateway, authorizer, accounts function, moto. Each step first checks
whether what ``local.json`` names still works, so running the bootstrap twice against the
same moto makes nothing twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from tollgate.aws.identity_store import admin_key_from_json, admin_key_to_json
from tollgate.identity.keys import KeyHasher, MalformedKey, parse_key
from tollgate.identity.service import issue_admin_key
from tollgate_local.resources import REGION, CreatedStack

# Logical ids of the template's resources that hold the pepper and the admin key record.
PEPPER_SECRET = "KeyPepperSecret"  # noqa: S105 - a logical id, not a secret
ADMIN_KEY_PARAMETER = "AdminKeyParameter"
TABLE = "TollgateTable"
DEMO_ORG = {"name": "Demo", "plan": "starter"}
DEMO_KEY = {"name": "Demo owner key", "user": "demo-owner", "role": "owner"}
DEMO_PROMO_CREDITS = 100
STATE_FILE = "local.json"


class BootstrapFailed(RuntimeError):
    """The runtime's own API refused to create the demo org or key."""


@dataclass(frozen=True)
class LocalState:
    """What ``.tollgate/local.json`` holds."""

    base_url: str
    admin_key: str
    demo_org_id: str
    demo_key: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def read_state(state_dir: Path) -> LocalState | None:
    """The previous ``local.json``, if there is a readable one."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
        return LocalState(**{name: str(data[name]) for name in LocalState.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(state_dir: Path, state: LocalState) -> Path:
    """Write ``local.json`` atomically (a reader never sees half a file), readable only by
    its owner since it holds keys."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / STATE_FILE
    partial = state_dir / f".{STATE_FILE}.{os.getpid()}"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(state.as_json(), handle, indent=2)
        handle.write("\n")
    partial.replace(target)
    return target


def ensure_admin_key(session: Any, stack: CreatedStack, previous: str | None = None) -> str:
    """The bootstrap admin key: ``previous`` if the stored record is its HMAC, otherwise a new
    one whose record (never the key) goes to the template's admin key parameter."""
    secret_id = stack.names[PEPPER_SECRET]
    parameter = stack.names[ADMIN_KEY_PARAMETER]
    pepper = session.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=secret_id)
    hasher = KeyHasher(str(pepper["SecretString"]).encode("utf-8"))
    ssm = session.client("ssm", region_name=REGION)
    stored = admin_key_from_json(str(ssm.get_parameter(Name=parameter)["Parameter"]["Value"]))
    if previous and stored is not None:
        try:
            key = parse_key(previous)
        except MalformedKey:
            key = None
        if key is not None and key.key_id == stored.key_id and hasher.matches(key, stored.key_hash):
            return previous
    plain, record = issue_admin_key(hasher)
    ssm.put_parameter(Name=parameter, Value=admin_key_to_json(record), Type="String", Overwrite=True)
    return plain.value


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _demo_still_works(client: httpx.Client, admin_key: str, previous: LocalState) -> bool:
    org = client.get(f"/v1/orgs/{previous.demo_org_id}", headers=_bearer(admin_key))
    me = client.get("/v1/me", headers=_bearer(previous.demo_key))
    return (
        org.status_code == 200 and me.status_code == 200 and me.json().get("org_id") == previous.demo_org_id
    )


def _created(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 201:
        raise BootstrapFailed(f"creating the {what} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def ensure_demo_org(
    client: httpx.Client, admin_key: str, previous: LocalState | None = None
) -> tuple[str, str]:
    """The demo org and its owner key, made through the API (``client`` has the runtime's
    base URL) unless the ones of ``previous`` still work. Returns (org id, owner key)."""
    if previous is not None and _demo_still_works(client, admin_key, previous):
        return previous.demo_org_id, previous.demo_key
    org = _created(client.post("/v1/orgs", json=DEMO_ORG, headers=_bearer(admin_key)), "demo org")
    org_id = str(org["org_id"])
    key = _created(
        client.post(f"/v1/orgs/{org_id}/keys", json=DEMO_KEY, headers=_bearer(admin_key)), "demo key"
    )
    return org_id, str(key["key"])


def seed_demo_credits(
    client: httpx.Client, admin_key: str, org_id: str, credits: int = DEMO_PROMO_CREDITS
) -> None:
    """Grant the demo org its promo credits (S10: 100) through the credits API.

    The grant carries a fixed ``Idempotency-Key`` per org, which the ledger turns into its own
    operation id: a second start against the same moto grants nothing twice.
    """
    response = client.post(
        f"/v1/orgs/{org_id}/credits/grants",
        json={"amount": credits, "kind": "promo", "note": "Local demo credits"},
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": f"local-demo-promo-{org_id}"},
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"could not grant the demo credits: {response.status_code} {response.text}")


def seed_starter_templates(session: Any, stack: CreatedStack) -> dict[str, str]:
    """The starter templates (``tollgate/data/templates``) as public templates, idempotently:
    the same step as ``python -m tollgate_local.seed_templates`` after a deploy."""
    from tollgate_local.seed_templates import seed_table

    outcomes = seed_table(stack.names[TABLE], session.client("dynamodb", region_name=REGION))
    return dict(outcomes)


def bootstrap(
    session: Any, stack: CreatedStack, base_url: str, state_dir: Path, *, timeout: float = 60.0
) -> LocalState:
    """Make (or keep) the admin key, the demo org, its key and credits; write ``local.json``."""
    previous = read_state(state_dir)
    admin_key = ensure_admin_key(session, stack, previous.admin_key if previous else None)
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:
        org_id, demo_key = ensure_demo_org(client, admin_key, previous)
        seed_demo_credits(client, admin_key, org_id)
    seed_starter_templates(session, stack)
    state = LocalState(base_url=base_url, admin_key=admin_key, demo_org_id=org_id, demo_key=demo_key)
    write_state(state_dir, state)
    return state


def describe(state: LocalState, state_file: Path, extra: Mapping[str, str] | None = None) -> str:
    """The text printed on start: where things are, the keys, and a ready ``curl``."""
    rows = {
        "API": state.base_url,
        "dashboard": f"{state.base_url}/dashboard (type the demo key into it)",
        **(extra or {}),
        "admin key": state.admin_key,
        "demo org": state.demo_org_id,
        "demo key": state.demo_key,
        "state file": str(state_file),
    }
    width = max(len(name) for name in rows)
    lines = ["Tollgate local runtime", *(f"  {name.ljust(width)}  {value}" for name, value in rows.items())]
    lines += ["", "Try:", f'  curl -H "Authorization: Bearer {state.demo_key}" {state.base_url}/v1/me', ""]
    return "\n".join(lines)
