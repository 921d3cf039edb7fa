"""A kit from another package, found through the ``interlink.partner_kits`` entry point: the
documented example normalizes its sample with no change to Interlink."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from tests.contracts.test_contracts import outcome_of
from tests.partner_plugin import EXAMPLE, install_example_kit

from interlink.partners.kit import KitRegistry, PartnerKit, plugin_kits
from interlink.partners.normalizer import Canonical, Inbound


def test_the_documented_example_kit_installs_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert KitRegistry.installed().get("harbor_pms") is None
    monkeypatch.syspath_prepend(str(install_example_kit(tmp_path)))
    kit = KitRegistry.installed().get("harbor_pms")
    assert kit is not None and kit.version == "0.1.0" and kit.verifier == "hmac"
    sample = json.loads((EXAMPLE / "sample.json").read_text())
    assert outcome_of(kit, Inbound(sample)) == json.loads((EXAMPLE / "expected.json").read_text())
    broken = dict(sample, booking={"code": "K-43", "berth": "B7", "state": "adrift"})
    rejected = outcome_of(kit, Inbound(broken))["quarantine"]
    assert rejected["stage"] == "mapping" and "'adrift'" in rejected["reason"]


def test_a_broken_plugin_is_left_out_and_the_others_load(tmp_path: Path) -> None:
    (tmp_path / "kit.toml").write_text('name = "half"\nversion = "1"\n')  # neither mapping nor code
    good = PartnerKit(name="code_kit", version="1", normalizer=_Nothing())
    points = [
        metadata.EntryPoint("half", f"{__name__}:half", "interlink.partner_kits"),
        metadata.EntryPoint("code", f"{__name__}:made", "interlink.partner_kits"),
    ]
    globals().update(half=lambda: tmp_path, made=lambda: good)  # what the entry points name
    assert [k.name for k in plugin_kits(lambda: points)] == ["code_kit"]


class _Nothing:
    def normalize(self, inbound: Inbound) -> list[Canonical]:
        return []


class _Broken:
    def normalize(self, inbound: Inbound) -> list[Canonical]:
        raise KeyError("booking")


def test_a_python_normalizer_that_fails_is_quarantined_not_fatal() -> None:
    kit = PartnerKit(name="buggy", version="1", normalizer=_Broken())
    rejected = outcome_of(kit, Inbound({"any": "thing"}))["quarantine"]
    assert rejected == {"stage": "mapping", "reason": "the normalizer failed: KeyError: 'booking'"}
