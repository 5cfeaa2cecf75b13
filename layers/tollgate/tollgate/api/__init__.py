"""HTTP plumbing shared by every API function: problem details, request ids, the caller,
body limits and idempotency. Handlers build their resolver with ``build_resolver``."""
