"""Realtime streams of the log to browsers and dashboards (SSE and WebSocket)."""
