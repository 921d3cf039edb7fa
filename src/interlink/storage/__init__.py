"""State and the event log behind ports; SQLAlchemy Core adapters for SQLite (and PostgreSQL)."""
