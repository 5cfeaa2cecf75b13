"""``tollgate``: the command-line client (S10), installed with the project.

    tollgate orgs create "Acme" --plan starter        # admin tasks (the admin key)
    tollgate keys create org_... --user ann --role member
    tollgate grants create org_... 25 --kind promo
    tollgate generate "Say hello" --model mock/chat   # a generation (an org's key)
    tollgate images batch prompts.jsonl --out images/ # submit, show progress, wait, download
    tollgate admin bootstrap --stage dev              # in AWS: the bootstrap admin key

Where it talks to, and with which key: ``--base-url`` / ``--key``, else ``TOLLGATE_BASE_URL`` /
``TOLLGATE_API_KEY``, else the local runtime's ``.tollgate/local.json`` (its admin key for
admin tasks, its demo key otherwise; ``--state-dir`` or ``TOLLGATE_STATE_DIR`` says where).

A batch file is JSONL (one job object a line: ``prompt`` and any field of ``POST /v1/images``,
plus an optional ``name`` for the file) or CSV (a header row; columns ``prompt``, ``name``,
``model``, ``size``, ``quality``, ``style``, ``n``, ``seed``, ``negative_prompt``, and
``context`` / ``metadata`` as JSON). It is sent in batches of 100, each with an
``Idempotency-Key`` derived from the file, so running the same file again (within a day)
picks up the same batches instead of paying twice. The exit status is 0 when every image was
made and downloaded, 1 when some job failed or the wait timed out, 2 for bad input or a refusal.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx

from tollgate.credits.amounts import exact_json
from tollgate_local.template import REPO_ROOT, Resolver, load_template

DEFAULT_BASE_URL = "http://127.0.0.1:3000"
BATCH_LIMIT = 100
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
JOB_FIELDS = {
    "prompt",
    "model",
    "size",
    "quality",
    "style",
    "n",
    "negative_prompt",
    "seed",
    "context",
    "entity",
    "cache",
    "metadata",
    "feature",
}
_CSV_INTEGERS = {"n", "seed"}
_CSV_JSON = {"context", "entity", "cache", "metadata"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """Something the user must fix (bad input, a refusal): printed, exit status 2."""


# -- where to talk to ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    base_url: str
    key: str | None


def _local_state(state_dir: str | None) -> dict[str, str]:
    candidates = (
        [Path(state_dir)]
        if state_dir
        else [Path(os.environ["TOLLGATE_STATE_DIR"])]
        if os.environ.get("TOLLGATE_STATE_DIR")
        else [Path.cwd() / ".tollgate", REPO_ROOT / ".tollgate"]
    )
    for folder in candidates:
        try:
            data = json.loads((folder / "local.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def resolve_target(args: argparse.Namespace, *, admin: bool) -> Target:
    """The base URL and key: flags, then environment, then ``.tollgate/local.json``."""
    state = _local_state(args.state_dir)
    base_url = (
        args.base_url or os.environ.get("TOLLGATE_BASE_URL") or state.get("base_url") or DEFAULT_BASE_URL
    )
    key = args.key or os.environ.get("TOLLGATE_API_KEY") or state.get("admin_key" if admin else "demo_key")
    return Target(base_url.rstrip("/"), key)


class Client:
    """The Tollgate API over HTTP; a problem answer becomes ``CliError`` with its detail."""

    def __init__(self, target: Target, http: httpx.Client | None = None) -> None:
        if not target.key:
            raise CliError("No API key: pass --key, set TOLLGATE_API_KEY, or start the local runtime")
        self._http = http or httpx.Client(base_url=target.base_url, timeout=60, trust_env=False)
        self._headers = {"Authorization": f"Bearer {target.key}"}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw_json: str | None = None,
    ) -> Any:
        """One API call; ``raw_json`` is a body already written (money as exact decimals)."""
        sent = {**self._headers, **(headers or {})}
        try:
            if raw_json is not None:
                sent["Content-Type"] = "application/json"
                response = self._http.request(method, path, content=raw_json.encode("utf-8"), headers=sent)
            else:
                response = self._http.request(method, path, json=body, headers=sent)
        except httpx.HTTPError as exc:
            raise CliError(f"{method} {path}: {exc}") from None
        if response.status_code >= 400:
            raise CliError(_problem_text(response))
        # Amounts stay exact: fractions are read as Decimal, never float.
        return json.loads(response.text, parse_float=Decimal) if response.content else None

    def download(self, url: str) -> bytes:
        """A presigned URL (no API key: the URL is its own credential)."""
        response = self._http.get(url, headers={})
        if response.status_code != 200:
            raise CliError(f"downloading {url[:80]}... answered {response.status_code}")
        return response.content


def open_client(args: argparse.Namespace, *, admin: bool) -> Client:
    """The client of a command: admin tasks default to the local admin key."""
    return Client(resolve_target(args, admin=admin))


def _problem_text(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if not isinstance(problem, dict):
        return f"HTTP {response.status_code}"
    status, code = problem.get("status", response.status_code), problem.get("code", "")
    text = f"{status} {code}: {problem.get('detail', '')}"
    for error in problem.get("errors") or []:
        text += f"\n  {error.get('field')}: {error.get('message')}"
    return text


# -- the batch file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem:
    """One line of a batch file: its job body and the name of its file."""

    line: int
    body: dict[str, Any]
    name: str


def _csv_value(column: str, text: str, line: int) -> Any:
    if column in _CSV_INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise CliError(f"line {line}: {column} must be a whole number, not {text!r}") from None
    if column in _CSV_JSON:
        try:
            return json.loads(text)
        except ValueError:
            raise CliError(f"line {line}: {column} must be JSON") from None
    return text


def _rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    stripped = text.lstrip()
    if suffix == ".csv" or (suffix not in (".jsonl", ".ndjson", ".json") and not stripped.startswith("{")):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise CliError(f"{path}: a CSV batch needs a header row with a prompt column")
        rows = []
        for number, row in enumerate(reader, start=2):
            values = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
            rows.append((number, {k: _csv_value(k, v, number) for k, v in values.items()}))
        return rows
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise CliError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise CliError(f"line {number}: a job is a JSON object")
        rows.append((number, value))
    return rows


def read_batch_file(path: Path, defaults: Mapping[str, Any]) -> list[BatchItem]:
    """The jobs of a JSONL or CSV file, each with the defaults given on the command line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    items: list[BatchItem] = []
    for number, row in _rows(text, path):
        name = str(row.pop("name", "") or "").strip()
        unknown = sorted(set(row) - JOB_FIELDS)
        if unknown:
            raise CliError(f"line {number}: unknown fields {', '.join(unknown)}")
        if not str(row.get("prompt", "")).strip():
            raise CliError(f"line {number}: a prompt is required")
        body = {**{k: v for k, v in defaults.items() if v is not None}, **row}
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:80]
        items.append(BatchItem(number, body, safe or f"{len(items) + 1:04d}"))
    if not items:
        raise CliError(f"{path}: no jobs in the file")
    return items


# -- the progress bar --------------------------------------------------------------------------


class ProgressBar:
    """``[########------------]  8/20 done, 1 failed`` on a terminal (redrawn in place); a line
    per change otherwise."""

    def __init__(self, total: int, stream: IO[str], width: int = 30, enabled: bool = True) -> None:
        self._total = total
        self._stream = stream
        self._width = width
        self._enabled = enabled
        self._tty = stream.isatty()
        self._last = ""

    def update(self, done: int, failed: int, running: int) -> None:
        if not self._enabled:
            return
        filled = self._width * done // self._total if self._total else self._width
        bar = "#" * filled + "-" * (self._width - filled)
        text = f"[{bar}] {done:>{len(str(self._total))}}/{self._total} done"
        if running:
            text += f", {running} running"
        if failed:
            text += f", {failed} failed"
        if text == self._last:
            return
        self._last = text
        self._stream.write(("\r" + text) if self._tty else (text + "\n"))
        self._stream.flush()

    def close(self) -> None:
        if self._enabled and self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


# -- commands ------------------------------------------------------------------------------------


@dataclass
class BatchRun:
    """``tollgate images batch``: submit, wait with a progress bar, download."""

    client: Client
    items: list[BatchItem]
    out: Path
    poll_seconds: float = 1.0
    timeout_seconds: float = 600.0
    resubmit: bool = False
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    progress: bool = True
    sleep: Callable[[float], None] = time.sleep

    def run(self) -> int:
        batches = self._submit()
        jobs = self._wait(batches)
        return self._download(jobs)

    def _submit(self) -> list[tuple[list[BatchItem], str]]:
        fingerprint = hashlib.sha256(
            json.dumps([item.body for item in self.items], sort_keys=True).encode("utf-8")
        ).hexdigest()[:32]
        if self.resubmit:
            fingerprint += "-" + secrets.token_hex(4)
        batches = []
        for start in range(0, len(self.items), BATCH_LIMIT):
            chunk = self.items[start : start + BATCH_LIMIT]
            accepted = self.client.call(
                "POST",
                "/v1/images/batch",
                {"items": [item.body for item in chunk]},
                headers={"Idempotency-Key": f"cli-batch-{fingerprint}-{start // BATCH_LIMIT}"},
            )
            batches.append((chunk, str(accepted["id"])))
            self.stderr.write(
                f"batch {accepted['id']}: {len(chunk)} images, {accepted['estimated_credits']} credits held\n"
            )
        return batches

    def _wait(self, batches: list[tuple[list[BatchItem], str]]) -> list[tuple[BatchItem, dict[str, Any]]]:
        bar = ProgressBar(len(self.items), self.stderr, enabled=self.progress)
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            states = [self.client.call("GET", f"/v1/images/batches/{batch_id}") for _, batch_id in batches]
            done = sum(int(s["progress"]["done"]) for s in states)
            failed = sum(int(s["progress"]["failed"]) for s in states)
            running = sum(int(s["progress"]["processing"]) for s in states)
            bar.update(done, failed, running)
            if done == len(self.items) or time.monotonic() >= deadline:
                break
            self.sleep(self.poll_seconds)
        bar.close()
        paired: list[tuple[BatchItem, dict[str, Any]]] = []
        for (chunk, _), state in zip(batches, states, strict=True):
            paired.extend(zip(chunk, state["jobs"], strict=True))
        return paired

    def _download(self, jobs: list[tuple[BatchItem, dict[str, Any]]]) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = []
        downloaded = problems = 0
        for item, job in jobs:
            entry: dict[str, Any] = {
                "line": item.line,
                "job_id": job["id"],
                "status": job["status"],
                "files": [],
            }
            if job["status"] == "completed":
                for index, image in enumerate(job["images"]):
                    suffix = f"-{index + 1}" if len(job["images"]) > 1 else ""
                    target = self.out / f"{item.name}{suffix}.{EXTENSIONS.get(image['format'], 'img')}"
                    target.write_bytes(self.client.download(image["url"]))
                    entry["files"].append(target.name)
                    downloaded += 1
            else:
                problems += 1
                entry["error"] = job.get("error")
                reason = (job.get("error") or {}).get("detail") or job["status"]
                self.stderr.write(f"line {item.line} ({job['id']}): {job['status']}: {reason}\n")
            manifest.append(entry)
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        self.stderr.write(f"{downloaded} images downloaded to {self.out}; {problems} jobs not completed\n")
        return EXIT_FAILED if problems else EXIT_OK


def _print(value: Any, stdout: IO[str]) -> None:
    """An answer as JSON, its amounts written exactly as the API sent them."""
    stdout.write(exact_json(value) + "\n")


def command_images_batch(args: argparse.Namespace, stdout: IO[str]) -> int:
    defaults = {"model": args.model, "size": args.size, "quality": args.quality}
    items = read_batch_file(Path(args.file), defaults)
    client = open_client(args, admin=False)
    return BatchRun(
        client,
        items,
        Path(args.out),
        poll_seconds=args.poll,
        timeout_seconds=args.timeout,
        resubmit=args.resubmit,
        progress=not args.no_progress,
    ).run()


def command_images_generate(args: argparse.Namespace, stdout: IO[str]) -> int:
    client = open_client(args, admin=False)
    body = {
        k: v
        for k, v in {
            "prompt": args.prompt,
            "model": args.model,
            "size": args.size,
            "quality": args.quality,
        }.items()
        if v
    }
    job = client.call("POST", "/v1/images", body)
    deadline = time.monotonic() + args.timeout
    while job["status"] in ("pending", "processing") and time.monotonic() < deadline:
        time.sleep(args.poll)
        job = client.call("GET", f"/v1/images/{job['id']}")
    if job["status"] != "completed":
        sys.stderr.write(f"{job['id']}: {job['status']}: {(job.get('error') or {}).get('detail', '')}\n")
        return EXIT_FAILED
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(job["images"]):
        target = out / f"{job['id']}-{index + 1}.{EXTENSIONS.get(image['format'], 'img')}"
        target.write_bytes(client.download(image["url"]))
        stdout.write(f"{target}\n")
    return EXIT_OK


def command_generate(args: argparse.Namespace, stdout: IO[str]) -> int:
    client = open_client(args, admin=False)
    body: dict[str, Any] = {"model": args.model, "prompt": args.prompt}
    if args.max_tokens:
        body["params"] = {"max_tokens": args.max_tokens}
    record = client.call("POST", "/v1/generate", body)
    if args.json:
        _print(record, stdout)
    else:
        stdout.write(str((record.get("result") or {}).get("text", "")) + "\n")
    return EXIT_OK


def command_orgs_create(args: argparse.Namespace, stdout: IO[str]) -> int:
    _print(
        open_client(args, admin=True).call("POST", "/v1/orgs", {"name": args.name, "plan": args.plan}),
        stdout,
    )
    return EXIT_OK


def command_orgs_get(args: argparse.Namespace, stdout: IO[str]) -> int:
    _print(open_client(args, admin=True).call("GET", f"/v1/orgs/{args.org_id}"), stdout)
    return EXIT_OK


def command_keys_create(args: argparse.Namespace, stdout: IO[str]) -> int:
    body = {"name": args.name or f"{args.role} key for {args.user}", "user": args.user, "role": args.role}
    _print(open_client(args, admin=True).call("POST", f"/v1/orgs/{args.org_id}/keys", body), stdout)
    return EXIT_OK


def command_keys_list(args: argparse.Namespace, stdout: IO[str]) -> int:
    _print(open_client(args, admin=False).call("GET", "/v1/keys"), stdout)
    return EXIT_OK


def command_keys_revoke(args: argparse.Namespace, stdout: IO[str]) -> int:
    _print(open_client(args, admin=True).call("DELETE", f"/v1/keys/{args.key_id}"), stdout)
    return EXIT_OK


def command_grants_create(args: argparse.Namespace, stdout: IO[str]) -> int:
    # Credits go as the exact decimal typed (never through a float).
    if not re.fullmatch(r"\d{1,12}(\.\d{1,4})?", args.amount):
        raise CliError(f"the amount must be credits with at most 4 decimals, not {args.amount!r}")
    fields = {"kind": args.kind, "note": args.note}
    raw = '{"amount": ' + args.amount + ", " + json.dumps(fields)[1:]
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    client = open_client(args, admin=True)
    _print(
        client.call("POST", f"/v1/orgs/{args.org_id}/credits/grants", headers=headers, raw_json=raw), stdout
    )
    return EXIT_OK


def command_balance(args: argparse.Namespace, stdout: IO[str]) -> int:
    query = f"?org_id={args.org}" if args.org else ""
    _print(open_client(args, admin=bool(args.org)).call("GET", f"/v1/credits/balance{query}"), stdout)
    return EXIT_OK


# -- the AWS bootstrap -------------------------------------------------------------------------


def stack_names(stage: str, template_path: Path | None = None) -> tuple[str, str]:
    """The pepper secret's and the admin key parameter's names in a stage, read from the
    template (nothing written twice)."""
    template = load_template(template_path) if template_path else load_template()
    resolver = Resolver(refs={"Stage": stage})
    resources = template["Resources"]
    pepper = str(resolver.resolve(resources["KeyPepperSecret"]["Properties"]["Name"]))
    parameter = str(resolver.resolve(resources["AdminKeyParameter"]["Properties"]["Name"]))
    return pepper, parameter


def bootstrap_admin(stage: str, *, force: bool, session: Any = None) -> str:
    """Make the bootstrap admin key of a deployed stage: its id and HMAC (with the stage's
    pepper) go to the admin key parameter; the key itself is returned, to be shown once.
    Refuses to replace an existing key unless ``force`` (which revokes the old one)."""
    import boto3

    from tollgate.aws.identity_store import admin_key_from_json, admin_key_to_json
    from tollgate.identity.keys import KeyHasher
    from tollgate.identity.service import issue_admin_key

    session = session or boto3.session.Session()
    pepper_name, parameter = stack_names(stage)
    ssm = session.client("ssm")
    current = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    if admin_key_from_json(current) is not None and not force:
        raise CliError(
            f"{parameter} already holds an admin key; --force replaces it (the old key stops working)"
        )
    pepper = session.client("secretsmanager").get_secret_value(SecretId=pepper_name)["SecretString"]
    plain, record = issue_admin_key(KeyHasher(str(pepper).encode("utf-8")))
    ssm.put_parameter(Name=parameter, Value=admin_key_to_json(record), Type="String", Overwrite=True)
    return plain.value


def command_admin_bootstrap(args: argparse.Namespace, stdout: IO[str]) -> int:
    key = bootstrap_admin(args.stage, force=args.force)
    stdout.write(f"admin key (shown once, keep it safe): {key}\n")
    return EXIT_OK


def command_admin_seed_templates(args: argparse.Namespace, stdout: IO[str]) -> int:
    """Load the starter templates into a deployed stage (or a named table): idempotent, it
    writes only what changed (``tollgate_local.seed_templates``)."""
    import boto3

    from tollgate_local.seed_templates import seed_table, stack_table

    session = boto3.session.Session(region_name=args.region)
    table = args.table or stack_table(session.client("cloudformation"), f"tollgate-{args.stage}")
    for template_id, outcome in seed_table(table, session.client("dynamodb")).items():
        stdout.write(f"{template_id}: {outcome}\n")
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description="The Tollgate command-line client.")
    parser.add_argument("--base-url", help="the API's base URL (TOLLGATE_BASE_URL; default: local.json)")
    parser.add_argument("--key", help="the API key (TOLLGATE_API_KEY; default: local.json)")
    parser.add_argument("--state-dir", help="where the local runtime's local.json is (TOLLGATE_STATE_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)

    admin = commands.add_parser("admin", help="operator tasks in AWS").add_subparsers(
        dest="task", required=True
    )
    bootstrap = admin.add_parser("bootstrap", help="make the bootstrap admin key of a deployed stage")
    bootstrap.add_argument("--stage", required=True, choices=["dev", "prod"])
    bootstrap.add_argument("--force", action="store_true", help="replace an existing admin key")
    bootstrap.set_defaults(run=command_admin_bootstrap)
    seed = admin.add_parser("seed-templates", help="load the starter templates into a deployed stage")
    where = seed.add_mutually_exclusive_group(required=True)
    where.add_argument("--stage", choices=["dev", "prod"], help="the stack tollgate-<stage>")
    where.add_argument("--table", help="a table name, instead of a stack's")
    seed.add_argument("--region", help="AWS region (default: your configuration's)")
    seed.set_defaults(run=command_admin_seed_templates)

    orgs = commands.add_parser("orgs", help="organizations (admin)").add_subparsers(
        dest="task", required=True
    )
    create_org = orgs.add_parser("create")
    create_org.add_argument("name")
    create_org.add_argument("--plan", default="starter")
    create_org.set_defaults(run=command_orgs_create)
    get_org = orgs.add_parser("get")
    get_org.add_argument("org_id")
    get_org.set_defaults(run=command_orgs_get)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="task", required=True)
    create_key = keys.add_parser("create", help="a key for a user of an org (admin or owner)")
    create_key.add_argument("org_id")
    create_key.add_argument("--user", required=True)
    create_key.add_argument("--role", default="member", choices=["member", "owner"])
    create_key.add_argument("--name")
    create_key.set_defaults(run=command_keys_create)
    keys.add_parser("list").set_defaults(run=command_keys_list)
    revoke = keys.add_parser("revoke")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=command_keys_revoke)

    grants = commands.add_parser("grants", help="credit grants (admin)").add_subparsers(
        dest="task", required=True
    )
    create_grant = grants.add_parser("create")
    create_grant.add_argument("org_id")
    create_grant.add_argument("amount", help="credits, at most 4 decimals")
    create_grant.add_argument("--kind", default="grant", choices=["grant", "promo", "bonus"])
    create_grant.add_argument("--note", required=True, help="why (kept on the ledger entry)")
    create_grant.add_argument("--idempotency-key")
    create_grant.set_defaults(run=command_grants_create)

    balance = commands.add_parser("balance", help="an org's credits")
    balance.add_argument("--org", help="an org id (with the admin key)")
    balance.set_defaults(run=command_balance)

    generate = commands.add_parser("generate", help="a text generation")
    generate.add_argument("prompt")
    generate.add_argument("--model", default="mock/chat")
    generate.add_argument("--max-tokens", type=int)
    generate.add_argument("--json", action="store_true", help="print the whole request record")
    generate.set_defaults(run=command_generate)

    images = commands.add_parser("images", help="image jobs").add_subparsers(dest="task", required=True)
    one = images.add_parser("generate", help="one image job: submit, wait, download")
    one.add_argument("prompt")
    one.add_argument("--model")
    one.add_argument("--size")
    one.add_argument("--quality")
    one.add_argument("--out", default="images")
    one.add_argument("--poll", type=float, default=1.0)
    one.add_argument("--timeout", type=float, default=600.0)
    one.set_defaults(run=command_images_generate)
    batch = images.add_parser("batch", help="a batch from a JSONL or CSV file: submit, wait, download")
    batch.add_argument("file")
    batch.add_argument("--out", default="images", help="the folder to download into (default: images)")
    batch.add_argument("--model", help="the model of items that name none")
    batch.add_argument("--size", help="the size of items that name none")
    batch.add_argument("--quality", help="the quality of items that name none")
    batch.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")
    batch.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most")
    batch.add_argument("--resubmit", action="store_true", help="submit again even if this file was submitted")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(run=command_images_batch)
    return parser


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args, stdout or sys.stdout)
    except CliError as exc:
        sys.stderr.write(f"tollgate: {exc}\n")
        return EXIT_USAGE
    return result


if __name__ == "__main__":
    raise SystemExit(main())
