"""Load the starter templates (``tollgate/data/templates/*.toml``) into a Tollgate table, as
public templates. The local runtime does it at every start (``bootstrap``); after a deploy::

    python -m tollgate_local.seed_templates --stage dev          # the table of stack tollgate-dev
    python -m tollgate_local.seed_templates --table my-table     # a table named directly

(``PYTHONPATH=layers/tollgate:local:.`` from the repository, or the installed package.) The
AWS credentials and region are the usual ones (``AWS_PROFILE``, ``AWS_REGION``). Running it
again is safe: an unchanged file changes nothing, a changed one makes a new version of its
template, a starter an admin deleted stays deleted. ``seed_table`` is the same, for code (the
command-line client).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from tollgate.aws.dynamodb import DynamoTable
from tollgate.aws.template_store import DynamoTemplateStore
from tollgate.generation.registry import load_models
from tollgate.metering.pricing import load_features
from tollgate.templates.service import SeedOutcome, TemplateService
from tollgate.templates.starter import seed_starters

TABLE_OUTPUT = "TableName"


def seed_table(table_name: str, dynamodb_client: Any) -> dict[str, SeedOutcome]:
    """Seed the starter templates into ``table_name`` with this boto3 DynamoDB client; what
    happened to each (``created``, ``updated``, ``unchanged`` or ``deleted``)."""
    service = TemplateService(
        DynamoTemplateStore(DynamoTable(table_name, dynamodb_client)), load_models(), load_features()
    )
    return seed_starters(service)


def stack_table(cloudformation_client: Any, stack_name: str) -> str:
    """The table a deployed Tollgate stack outputs (``TableName``)."""
    stacks = cloudformation_client.describe_stacks(StackName=stack_name)["Stacks"]
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == TABLE_OUTPUT:
            return str(output["OutputValue"])
    raise SystemExit(f"stack {stack_name} has no {TABLE_OUTPUT} output")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tollgate_local.seed_templates", description="Load the starter templates into a stack."
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--stage", choices=("dev", "prod"), help="the stack tollgate-<stage> (samconfig.toml)"
    )
    target.add_argument("--table", help="a table name, instead of a stack's")
    parser.add_argument("--region", help="AWS region (default: your configuration's)")
    parser.add_argument("--endpoint-url", help="a DynamoDB-compatible endpoint (e.g. a moto server)")
    args = parser.parse_args(argv)

    import boto3

    session = boto3.session.Session(region_name=args.region)
    table = args.table or stack_table(session.client("cloudformation"), f"tollgate-{args.stage}")
    outcomes = seed_table(table, session.client("dynamodb", endpoint_url=args.endpoint_url))
    for template_id, outcome in outcomes.items():
        print(f"{template_id}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
