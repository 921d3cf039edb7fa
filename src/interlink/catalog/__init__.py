"""The event catalog: canonical event types with versioned JSON Schemas (``schemas/``)."""
