"""What the dispatchers tell the server log: failed attempts, dead letters, breakers opening
and closing, endpoints disabled, each with the ids it is about.

Failed attempts and dead letters are limited per endpoint (:class:`LogLimiter`), so an
endpoint that is down cannot flood the log; lane changes are rare by construction (a breaker
opens once per trip) and always written. Error texts go through the log's redaction like
every line; URLs are not logged (a tenant may have put a token in a query string).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from interlink.domain.delivery import AttemptOutcome, DeliveryStatus
from interlink.observability.log_limit import LogLimiter
from interlink.storage.ports import LaneNotice, Settled

log = structlog.get_logger("interlink.deliveries")

_NOTICE_EVENTS = {
    "breaker_opened": "delivery.breaker_opened",
    "breaker_closed": "delivery.breaker_closed",
    "endpoint_disabled": "delivery.endpoint_disabled",
}


class DeliveryLog:
    def __init__(self, limiter: LogLimiter | None = None) -> None:
        self.limiter = limiter or LogLimiter()

    def settled(self, batch: Sequence[Settled], notices: Sequence[LaneNotice], now: float) -> None:
        for s in batch:
            if s.result.outcome is AttemptOutcome.SUCCEEDED:
                continue
            verdict = self.limiter.check(s.claimed.endpoint_id, now)
            if not verdict.emit:
                continue
            c, dead = s.claimed, s.decision.status is DeliveryStatus.DEAD
            extra = {"suppressed": verdict.suppressed} if verdict.suppressed else {}
            (log.warning if dead else log.info)(
                "delivery.dead_lettered" if dead else "delivery.attempt_failed",
                tenant_id=c.tenant_id,
                endpoint_id=c.endpoint_id,
                delivery_id=c.delivery_id,
                event_id=c.event_id,
                attempt=s.decision.attempt_count,
                outcome=s.result.outcome.value,
                status_code=s.result.status_code,
                error=s.result.error,
                retry_in_s=None
                if s.decision.next_attempt_in is None
                else round(s.decision.next_attempt_in, 3),
                **extra,
            )
        for n in notices:
            log.warning(
                _NOTICE_EVENTS.get(n.change, f"delivery.{n.change}"),
                tenant_id=n.tenant_id,
                endpoint_id=n.endpoint_id,
                reason=n.detail,
            )
