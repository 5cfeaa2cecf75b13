"""AI providers behind one interface (S6): OpenAI, Anthropic, Gemini, Stability AI, Ollama and
the deterministic ``mock``. See ``docs/providers.md``.

- ``base``: the ``Provider`` protocol and its typed requests and results;
- ``errors``: ``UpstreamError`` (502), ``UpstreamTimeout`` (504), ``ProviderNotConfigured``;
- ``http``: the shared ``httpx`` client, timeouts, retries with jittered backoff;
- ``keys``: where credentials come from (env locally; ``tollgate.aws.provider_keys`` in AWS);
- one module per provider, and ``catalog`` to build them all.

Import from the modules themselves: this package imports nothing, so that reading a request
type does not load every adapter and ``httpx`` with it (cold start).
"""
