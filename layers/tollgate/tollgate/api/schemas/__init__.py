"""Request and response bodies of the public API (pydantic), one module per function."""
