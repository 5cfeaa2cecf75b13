"""Tollgate: a serverless AI usage gateway.

The shared package of every Lambda function, the local runtime and the tests. It is shipped
in the Lambda layer and imported everywhere as ``tollgate``.

Layout:
- ``tollgate.errors``: the domain exceptions, each with its HTTP status and stable code.
- ``tollgate.identity``: organizations, API keys and callers (no AWS inside).
- ``tollgate.aws``: the only modules that talk to AWS (DynamoDB, Secrets Manager, SSM, ...).
- ``tollgate.api``: the HTTP plumbing every function shares (problem details, request ids,
  body parsing, idempotency).
"""

__version__ = "0.1.0"
