"""moto's DynamoDB made atomic per request, as DynamoDB is.

moto's server handles each HTTP request on its own thread, and its DynamoDB backend takes no
lock: two requests can interleave inside one ``TransactWriteItems`` (moto checks conditions,
then writes, then on failure restores a deep copy of the whole table, undoing the other
thread's writes). DynamoDB itself makes every request atomic (item-level atomicity,
serializable transactions), and Tollgate's ledger relies on that contract. The local runtime
and the concurrency tests apply this patch so that moto honours it; requests from concurrent
clients still race each other exactly as on AWS (read, compute, conditional write).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def make_dynamodb_requests_atomic() -> Callable[[], None]:
    """Make each DynamoDB request of the in-process moto server atomic, as DynamoDB's are.

    Also: moto backs a transaction up by deep-copying its whole table (O(table size) per
    transaction, ~1 ms per item here), which would make this test slower with every item it
    writes. Under the lock nobody else writes, so backing up just the items the transaction
    touches gives the same all-or-nothing result: on any failure they are put back as they were.
    A wrong rollback would leave partial writes, which the ledger checks below would catch.
    """
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    in_transaction = threading.local()
    module_namespace = vars(dynamodb_models)
    real_copy = module_namespace["copy"]
    original_call = DynamoHandler.call_action
    original_transact = DynamoDBBackend.transact_write_items

    class _TableCopySkipped:
        """``copy`` as moto's backend sees it: tables are not copied inside a transaction."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            if isinstance(value, Table) and getattr(in_transaction, "on", False):
                return value
            return real_copy.deepcopy(value, memo)

    def atomic_call(self: Any) -> Any:
        with lock:
            return original_call(self)

    def transact_with_item_backups(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            operation = next(iter(entry.values()))
            table = self.get_table(operation["TableName"])
            key = operation.get("Key") or operation["Item"]
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr])
            backups.append(
                (table, hash_value, range_value, real_copy.deepcopy(table.get_item(hash_value, range_value)))
            )
        in_transaction.on = True
        try:
            original_transact(self, transact_items)
        except BaseException:
            for table, hash_value, range_value, item in reversed(backups):
                if item is None:
                    table.items[hash_value].pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = item
            raise
        finally:
            in_transaction.on = False

    module_namespace["copy"] = _TableCopySkipped
    DynamoHandler.call_action = atomic_call  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_with_item_backups  # type: ignore[method-assign]

    def undo() -> None:
        module_namespace["copy"] = real_copy
        DynamoHandler.call_action = original_call  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = original_transact  # type: ignore[method-assign]

    return undo
