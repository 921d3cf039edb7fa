"""Kafka destinations, the pure part: where a tenant may write, and what a record carries.

Clusters are the operator's (``[kafka.clusters.NAME]`` in the settings): a tenant names one by
name and never supplies a broker address, so it cannot make Interlink connect anywhere the
operator did not configure. A grant opens a cluster to one tenant (or to every tenant, ``*``),
optionally only for topics under a prefix; ``{tenant}`` in a prefix stands for the tenant's id,
so one grant can give every tenant a namespace of its own.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

import msgspec

EVERY_TENANT = "*"
# Kafka's own rule for topic names (kafka.common.internals.Topic): legal characters, 249 at most.
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
CLUSTER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# What a key template may name: the event's fields a delivery has at hand without decoding it.
KEY_FIELDS = frozenset({"key", "type", "event_id", "tenant", "endpoint"})
# The record headers besides the trace context: webhook-id as a webhook's, so consumers dedupe
# the same way (the event id, stable across retries, redrives and replays).
HEADER_ID = "webhook-id"
HEADER_TYPE = "interlink-event-type"
HEADER_TENANT = "interlink-tenant"


class KafkaTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a Kafka endpoint writes: a granted cluster's topic, and how a record's key is made
    (None: the event's ordering key)."""

    cluster: str
    topic: str
    key: str | None = None


class KafkaGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: str  # a tenant id, or "*" for every tenant
    topic_prefix: str = ""  # "" grants every topic; "{tenant}" stands for the tenant's id


def granted_prefix(grants: Iterable[KafkaGrant], tenant_id: str, topic: str) -> str | None:
    """The prefix of the first grant that admits ``topic`` for the tenant, None when none does."""
    for grant in grants:
        if grant.tenant not in (EVERY_TENANT, tenant_id):
            continue
        prefix = grant.topic_prefix.replace("{tenant}", tenant_id)
        if topic.startswith(prefix):
            return prefix
    return None


def target_problem(
    clusters: dict[str, tuple[KafkaGrant, ...]], tenant_id: str, target: KafkaTarget
) -> str | None:
    """Why the tenant may not write to ``target`` (field-named, for a 422), None when it may.

    An unknown cluster and one not granted read alike: a tenant learns nothing of the clusters
    it was not given.
    """
    grants = clusters.get(target.cluster)
    mine = [g for g in grants or () if g.tenant in (EVERY_TENANT, tenant_id)]
    if not mine:
        return f"kafka.cluster: no cluster '{target.cluster}' is granted to this tenant"
    if not re.match(TOPIC_PATTERN, target.topic) or target.topic in (".", ".."):
        return "kafka.topic: a topic is 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'"
    if granted_prefix(mine, tenant_id, target.topic) is None:
        prefixes = sorted({g.topic_prefix.replace("{tenant}", tenant_id) for g in mine})
        shown = ", ".join(f"'{p}'" for p in prefixes)
        return f"kafka.topic: '{target.topic}' is outside the topics granted ({shown})"
    if target.key is not None:
        return key_template_problem(target.key)
    return None


def key_template_problem(template: str) -> str | None:
    """Why ``template`` is not a key template, None when it is: text with ``{field}``s of
    KEY_FIELDS (``{{`` and ``}}`` for braces)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"kafka.key: {exc}"
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in KEY_FIELDS or spec or conversion:
            names = ", ".join(f"{{{f}}}" for f in sorted(KEY_FIELDS))
            return f"kafka.key: '{{{field}}}' is not one of {names}"
    return None


def record_key(
    template: str | None,
    *,
    key: str | None,
    event_type: str,
    event_id: str,
    tenant_id: str,
    endpoint_id: str,
) -> bytes | None:
    """The record's key: the template filled in, or the event's ordering key (None: no key, so
    the producer spreads the records over the partitions). An absent ordering key fills in as ''."""
    if template is None:
        return None if key is None else key.encode()
    return template.format(
        key=key or "",
        type=event_type,
        event_id=event_id,
        tenant=tenant_id,
        endpoint=endpoint_id,
    ).encode()


def record_headers(event_id: str, event_type: str, tenant_id: str) -> list[tuple[str, bytes]]:
    return [
        (HEADER_ID, event_id.encode()),
        (HEADER_TYPE, event_type.encode()),
        (HEADER_TENANT, tenant_id.encode()),
    ]
