"""The one session every request to a partner (its token endpoint, its API) goes through.

Partner URLs come from tenants just as endpoint URLs do, so the same guarded session serves
both (delivery/guarded_session.py); IP literals are checked before a request as well.
"""

from __future__ import annotations

from interlink.delivery.guarded_session import GuardedSession
from interlink.delivery.outbound_guard import OutboundPolicy


class PartnerSession(GuardedSession):
    def __init__(
        self, policy: OutboundPolicy, *, max_connections: int = 100, user_agent: str = "Interlink"
    ) -> None:
        super().__init__(policy, max_connections=max_connections, user_agent=user_agent)
