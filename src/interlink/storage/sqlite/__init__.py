"""The SQLite adapters of the hot path: the stdlib driver on a thread of its own."""
