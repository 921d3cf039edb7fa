"""``/stream-demo``: a page that shows a tenant's events live, with an ``EventSource``.

Served by Interlink itself and self-contained (no script or style from elsewhere), so it works
on a machine without internet access. The tenant key typed into it stays in the page: it mints
a stream token (``POST /api/v1/stream-tokens``) and the stream is opened with the token.
"""

from __future__ import annotations

import importlib.resources

from litestar import Response, get

_PAGE = (importlib.resources.files("interlink.api") / "stream_demo.html").read_bytes()


@get("/stream-demo", include_in_schema=False)
async def stream_demo() -> Response[bytes]:
    return Response(
        content=_PAGE,
        media_type="text/html; charset=utf-8",
        headers={
            # Nothing but this page's own inline script and style, and requests to itself.
            "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'",
            "cache-control": "no-store",
        },
    )
