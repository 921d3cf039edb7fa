"""Contract tests of the partner kits: one folder per case, no code per case.

``tests/contracts/<kit>/<case>/input.json`` is the partner's payload (``headers.json``, if
present, the request headers); ``expected.json`` is either ``{"events": [...]}`` — the canonical
events, in order, as ``type``, ``version``, ``key``, ``occurred_at`` (ISO 8601) and ``data`` — or
``{"quarantine": {"stage": ..., "reason": ...}}``, where ``reason`` is a part of the reason given.

A kit of thin notifications fetches from the partner's API first: the case's answers are files,
``fetched/<path>.json`` for ``GET <path>`` (a path with no file: the partner cannot answer it,
so the case ends in the quarantine with stage ``fetch_failed``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interlink.api.schemas import iso
from interlink.catalog.catalog import EventCatalog
from interlink.domain.envelope import extract
from interlink.domain.models import Envelope
from interlink.partners.hydration import NotificationError, fetches, hydrated
from interlink.partners.kit import KitRegistry, PartnerKit
from interlink.partners.normalizer import Inbound
from interlink.partners.pipeline import Rejected, Stage, normalize

HERE = Path(__file__).parent
CASES = sorted(p.parent for p in HERE.glob("*/*/input.json"))
KITS = KitRegistry.installed()
CATALOG = EventCatalog.builtin()


def outcome(case: Path) -> dict[str, Any]:
    """What the kit makes of the case's input, in the shape of ``expected.json``."""
    kit = KITS.get(case.parent.name)
    assert kit is not None, f"{case.parent.name}: no such partner kit is installed"
    headers_file = case / "headers.json"
    headers = json.loads(headers_file.read_text()) if headers_file.exists() else {}
    body = (case / "input.json").read_bytes()
    try:
        payload = fetched(kit, case, json.loads(body), body, headers)
    except Rejected as exc:
        return {"quarantine": {"stage": exc.stage.value, "reason": exc.reason}}
    return outcome_of(kit, Inbound(payload, headers))


def fetched(kit: PartnerKit, case: Path, payload: Any, body: bytes, headers: dict[str, str]) -> Any:
    """The payload as the stage hands it to the normalizer: hydrated from the case's files."""
    if kit.api is None:
        return payload
    partner_type = extract(payload, body, headers, kit.envelope or Envelope()).type
    try:
        plan = fetches(kit.api, partner_type, payload)
    except NotificationError as exc:
        raise Rejected(Stage.INBOUND, str(exc)) from None
    answers = []
    for fetch in plan:
        answer = case / "fetched" / f"{fetch.path}.json"
        if not answer.is_file():
            raise Rejected(Stage.FETCH, f"GET {fetch.path}: the partner answered 404")
        answers.append((fetch, json.loads(answer.read_text())))
    return hydrated(payload, answers)


def outcome_of(kit: PartnerKit, inbound: Inbound) -> dict[str, Any]:
    try:
        events = normalize(kit, CATALOG, inbound)
    except Rejected as exc:
        return {"quarantine": {"stage": exc.stage.value, "reason": exc.reason}}
    return {
        "events": [
            {
                "type": e.type,
                "version": e.version,
                "key": e.key,
                "occurred_at": iso(e.occurred_at),
                "data": e.data,
            }
            for e in events
        ]
    }


def test_every_reference_kit_has_cases_and_a_quarantined_one() -> None:
    for kit in KITS.all():
        cases = [c for c in CASES if c.parent.name == kit.name]
        assert len(cases) >= 4, kit.name
        assert any("quarantine" in json.loads((c / "expected.json").read_text()) for c in cases)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_contract(case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    got = outcome(case)
    if "quarantine" in expected:
        assert "quarantine" in got, f"expected a quarantine, got {got}"
        assert got["quarantine"]["stage"] == expected["quarantine"]["stage"], got
        assert expected["quarantine"]["reason"] in got["quarantine"]["reason"], got
    else:
        assert got == expected
