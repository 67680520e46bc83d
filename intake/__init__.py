"""Accepting work: validate a request, record its job in MongoDB, hand it to an
engine, and describe its state (used by the API, the CLI and the warm start)."""
