"""The API's request: its JSON body decoded by the one decoder of outside JSON."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException
from litestar.types import Empty

from interlink.domain import json_input


class JsonRequest(Request[Any, Any, Any]):
    """A request whose ``json()`` refuses what ingest refuses: too deep, not UTF-8, malformed.

    Litestar's own decoding lets msgspec's ``RecursionError`` and ``UnicodeDecodeError`` through
    as 500s; here they are the client's 400.
    """

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                try:
                    decoded = json_input.decode(body or b"null")
                except json_input.InvalidJson as exc:
                    raise ClientException(str(exc)) from None
                self._json = self._connection_state.json = decoded
        return self._json
