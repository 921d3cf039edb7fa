"""Pull consumers: :class:`Consumer` runs your handlers over a pull endpoint's deliveries
(``interlink-consume module:app`` from a shell)."""

from interlink_client.consumer.core import Consumer, Hooks, Retry, Stats
from interlink_client.models import Message

__all__ = ["Consumer", "Hooks", "Message", "Retry", "Stats"]
