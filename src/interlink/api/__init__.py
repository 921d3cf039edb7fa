"""The management REST API (Litestar, OpenAPI 3.1)."""
