"""FastAPI + Celery (Redis broker): ingest, dedupe, enqueue in the web app; delivery in workers."""
