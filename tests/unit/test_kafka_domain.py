"""Kafka destinations' pure rules: grants (which cluster and topics a tenant may write to), key
templates, record keys and headers; and the clusters' settings (file, JSON and per-field env)."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlink import config
from interlink.domain.kafka import (
    KafkaGrant,
    KafkaTarget,
    granted_prefix,
    key_template_problem,
    record_headers,
    record_key,
    target_problem,
)

GRANTS = {
    "main": (KafkaGrant("*", "shared.{tenant}."), KafkaGrant("tnt_a", "a-only.")),
    "private": (KafkaGrant("tnt_b"),),
}


@pytest.mark.parametrize(
    ("tenant", "target", "problem"),
    [
        ("tnt_a", KafkaTarget("main", "shared.tnt_a.orders"), None),
        ("tnt_a", KafkaTarget("main", "a-only.x"), None),
        ("tnt_b", KafkaTarget("main", "a-only.x"), "kafka.topic: 'a-only.x' is outside"),
        ("tnt_b", KafkaTarget("main", "shared.tnt_a.orders"), "kafka.topic:"),
        ("tnt_b", KafkaTarget("private", "anything"), None),
        ("tnt_a", KafkaTarget("private", "anything"), "kafka.cluster: no cluster 'private'"),
        ("tnt_a", KafkaTarget("nowhere", "x"), "kafka.cluster: no cluster 'nowhere'"),
        ("tnt_b", KafkaTarget("private", ".."), "kafka.topic: a topic is"),
        ("tnt_b", KafkaTarget("private", "x", "{key}:{nope}"), "kafka.key: '{nope}'"),
    ],
)
def test_target_problem(tenant: str, target: KafkaTarget, problem: str | None) -> None:
    found = target_problem(GRANTS, tenant, target)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


def test_an_unknown_cluster_reads_like_one_not_granted() -> None:
    a = target_problem(GRANTS, "tnt_a", KafkaTarget("private", "x"))
    b = target_problem(GRANTS, "tnt_a", KafkaTarget("nowhere", "x"))
    assert a is not None and b is not None
    assert a.replace("private", "?") == b.replace("nowhere", "?")


def test_the_tenant_placeholder_keeps_tenants_apart() -> None:
    grants = (KafkaGrant("*", "{tenant}."),)
    assert granted_prefix(grants, "tnt_a", "tnt_a.x") == "tnt_a."
    assert granted_prefix(grants, "tnt_b", "tnt_a.x") is None


@pytest.mark.parametrize(
    ("template", "ok"),
    [("{key}", True), ("{type}/{key}", True), ("{{literal}}-{event_id}", True),
     ("{data}", False), ("{key!r}", False), ("{key:>5}", False), ("{", False), ("}", False)],
)  # fmt: skip
def test_key_templates(template: str, ok: bool) -> None:
    assert (key_template_problem(template) is None) is ok


def test_record_key_defaults_to_the_ordering_key() -> None:
    fields = {"event_type": "t", "event_id": "evt_1", "tenant_id": "tnt_a", "endpoint_id": "ep_1"}
    assert record_key(None, key="k", **fields) == b"k"
    assert record_key(None, key=None, **fields) is None
    assert record_key("{tenant}/{type}/{key}", key="k", **fields) == b"tnt_a/t/k"
    assert record_key("{key}-{endpoint}", key=None, **fields) == b"-ep_1"


def test_record_headers() -> None:
    assert record_headers("evt_1", "order.placed", "tnt_a") == [
        ("webhook-id", b"evt_1"),
        ("interlink-event-type", b"order.placed"),
        ("interlink-tenant", b"tnt_a"),
    ]


def test_clusters_from_the_file_and_the_environment(tmp_path: Path) -> None:
    toml = tmp_path / "interlink.toml"
    toml.write_text(
        "[kafka.clusters.main]\n"
        'bootstrap_servers = "b1:9092"\n'
        'security_protocol = "sasl_ssl"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "interlink"\n'
        'sasl_password = "from-the-file"\n'
        "[[kafka.clusters.main.grants]]\n"
        'tenant = "tnt_a"\n'
        'topic_prefix = "a."\n'
    )
    env = {
        "INTERLINK_KAFKA__CLUSTERS__MAIN__SASL_PASSWORD": "from-env",
        "INTERLINK_KAFKA__CLUSTERS__LOGS__BOOTSTRAP_SERVERS": "b2:9092",
        "INTERLINK_KAFKA__CLUSTERS__LOGS__GRANTS": "*={tenant}.,tnt_b",
    }
    s = config.load(path=str(toml), env=env)
    main, logs = s.kafka.clusters["main"], s.kafka.clusters["logs"]
    assert main.sasl_password == "from-env" and main.bootstrap_servers == "b1:9092"
    assert main.grants == (KafkaGrant("tnt_a", "a."),)
    assert logs.grants == (KafkaGrant("*", "{tenant}."), KafkaGrant("tnt_b", ""))
    assert s.kafka.grants()["logs"] == logs.grants


def test_clusters_as_json_and_refusals(tmp_path: Path) -> None:
    none = str(tmp_path / "none.toml")
    env = {"INTERLINK_KAFKA": '{"clusters": {"c1": {"bootstrap_servers": "b:1"}}}'}
    assert config.load(path=none, env=env).kafka.clusters["c1"].grants == ()
    for bad in (
        {"INTERLINK_KAFKA": "{nope"},
        {"INTERLINK_KAFKA__CLUSTERS__C1": "x"},
        {"INTERLINK_KAFKA__CLUSTERS__C1__SECURITY_PROTOCOL": "ssl"},  # no bootstrap_servers
        {"INTERLINK_KAFKA": '{"clusters": {"Bad Name": {"bootstrap_servers": "b:1"}}}'},
        {"INTERLINK_KAFKA": '{"clusters": {"c": {"bootstrap_servers": "b", "security_protocol'
         '": "sasl_ssl"}}}'},
    ):  # fmt: skip
        with pytest.raises(config.ConfigError):
            config.load(path=none, env=bad)
