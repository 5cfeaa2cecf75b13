"""Organizations, API keys and the caller a key turns into (S2). No AWS in here."""
