"""A stand-in OpenTelemetry collector for the benchmark: accepts OTLP/HTTP trace exports on
loopback and counts them, so Interlink's tracing runs for real (spans made, batched, encoded and
sent) without a collector to install. ``python -m bench.otlp_sink PORT``."""

from __future__ import annotations

import sys

from aiohttp import web

_received = {"exports": 0, "bytes": 0}


async def _traces(request: web.Request) -> web.Response:
    body = await request.read()
    _received["exports"] += 1
    _received["bytes"] += len(body)
    return web.Response(status=200, content_type="application/x-protobuf", body=b"")


async def _stats(_: web.Request) -> web.Response:
    return web.json_response(_received)


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", _traces)
    app.router.add_get("/stats", _stats)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
