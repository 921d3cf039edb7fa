"""The baseline's configuration: one JSON file (path in ``BENCH_BASELINE_CONFIG``) that the
benchmark writes, read by the web app and by the Celery workers alike.

Sources and routes are static here, as a team would start: no management API, no database.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "BENCH_BASELINE_CONFIG"


@dataclass(frozen=True)
class Source:
    partner: str  # "A" Standard Webhooks, "B" GitHub-style, "C" Shopify-style
    secret: str
    tenant: int


@dataclass(frozen=True)
class Endpoint:
    url: str
    secret: str  # whsec_


@dataclass(frozen=True)
class Config:
    redis_url: str
    tolerance_seconds: int
    sources: dict[str, Source]
    endpoints: dict[int, list[Endpoint]]  # by tenant
    enqueue: str = "thread"  # "thread": Celery's blocking publish off the event loop; "inline"


def dump(config: Config, path: Path) -> None:
    data: dict[str, Any] = {
        "redis_url": config.redis_url,
        "tolerance_seconds": config.tolerance_seconds,
        "enqueue": config.enqueue,
        "sources": {k: vars(v) for k, v in config.sources.items()},
        "endpoints": {str(t): [vars(e) for e in eps] for t, eps in config.endpoints.items()},
    }
    path.write_text(json.dumps(data))


def load(path: str | None = None) -> Config:
    raw = json.loads(Path(path or os.environ[ENV]).read_text())
    return Config(
        redis_url=raw["redis_url"],
        tolerance_seconds=int(raw["tolerance_seconds"]),
        enqueue=raw.get("enqueue", "thread"),
        sources={k: Source(**v) for k, v in raw["sources"].items()},
        endpoints={int(t): [Endpoint(**e) for e in eps] for t, eps in raw["endpoints"].items()},
    )
