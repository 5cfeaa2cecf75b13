"""The AWS-free parts of generation (S6, S12):

- ``registry``: the model registry (``data/models.toml``), aliases and their resolution;
- ``fallback``: ``call_with_fallback`` over a resolved chain;
- ``security``: size limits, prompt-injection detection, PII/secret detection, per-org policy;
- ``cache_key``: the exact cache's key, cacheability and TTLs;
- ``requests`` / ``responses``: the OpenAI-compatible and native bodies.
"""
