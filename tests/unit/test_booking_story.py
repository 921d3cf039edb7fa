"""The simulated partner's bookings and faults: every story is a legal life under the pms_alpha
kit's machine, the faults are what was asked for (and the same under the same seed), and the
kit's reconciler reads a listed item as the webhook its mapping knows."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.catalog.catalog import EventCatalog
from interlink.partners.booking_story import Faults, interleave, plan_sends, stories
from interlink.partners.kit import InvalidKit, KitRegistry, load_kit
from interlink.partners.normalizer import Inbound
from interlink.partners.pipeline import normalize

KIT = KitRegistry.installed().get("pms_alpha")
assert KIT is not None
MACHINE = KIT.entities["booking"].machine


@given(st.integers(0, 2**32))
def test_every_story_is_a_legal_life_with_rising_revisions(seed: int) -> None:
    for story in stories(random.Random(seed), 20):
        assert story[0].state in MACHINE.initial and story[0].event == "reservation.created"
        for before, after in itertools.pairwise(story):
            assert after.revision == before.revision + 1
            assert after.state == before.state or after.state in MACHINE.transitions[before.state]


@given(st.integers(0, 2**32))
def test_interleaving_keeps_each_bookings_order(seed: int) -> None:
    rng = random.Random(seed)
    per = stories(rng, 15)
    merged = interleave(rng, per)
    assert len(merged) == sum(len(s) for s in per)
    for story in per:
        assert [c for c in merged if c.booking_id == story[0].booking_id] == story


@given(st.integers(0, 2**32), st.floats(0, 1), st.floats(0, 1), st.integers(0, 10))
def test_the_plan_accounts_for_every_change(
    seed: int, drop: float, duplicate: float, reorder: int
) -> None:
    rng = random.Random(seed)
    changes = interleave(rng, stories(rng, 30))
    faults = Faults(drop=drop, duplicate=duplicate, reorder=reorder)
    plan = plan_sends(random.Random(seed), changes, faults, "w-")
    originals = [s for s in plan.sends if not s.duplicate]
    assert len(originals) + len(plan.dropped) == len(changes)
    assert {s.webhook_id for s in plan.sends if s.duplicate} <= {s.webhook_id for s in originals}
    assert plan == plan_sends(random.Random(seed), changes, faults, "w-")  # seeded
    if reorder <= 1:
        assert plan.reordered == 0


def test_fractions_come_out_near_what_was_asked() -> None:
    rng = random.Random(9)
    changes = interleave(rng, stories(rng, 2000))
    plan = plan_sends(rng, changes, Faults(drop=0.05, duplicate=0.10, reorder=4), "w-")
    assert 0.04 < len(plan.dropped) / len(changes) < 0.06
    sent = len(changes) - len(plan.dropped)
    assert 0.08 < sum(s.duplicate for s in plan.sends) / sent < 0.12
    assert plan.reordered > 0


def test_bad_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="fractions"):
        Faults(drop=1.5)
    with pytest.raises(ValueError, match="negative"):
        Faults(reorder=-1)


def test_a_listed_item_is_normalized_by_the_kits_own_mapping() -> None:
    assert KIT is not None and KIT.reconciler is not None
    change = stories(random.Random(2), 1)[0][-1]
    item = {**change.reservation, "modified_at": "2026-05-01T10:00:00+00:00", "updated_at": 1.0}
    webhook = KIT.reconciler.webhook_for(item)
    assert webhook["reservation"] is item and webhook["sent_at"] == item["modified_at"]
    [event] = normalize(KIT, EventCatalog.builtin(), Inbound(webhook))
    assert event.type == "booking.updated" and event.key == change.booking_id
    assert event.data["status"] == change.state and event.data["revision"] == change.revision
    items, cursor = KIT.reconciler.page({"data": [item], "next_cursor": "c1"})
    assert items == [item] and cursor == "c1"
    assert KIT.reconciler.page({"data": [], "next_cursor": None}) == ([], None)
    with pytest.raises(ValueError, match="no list at 'data'"):
        KIT.reconciler.page({"items": []})


def test_a_reconciler_naming_an_undeclared_entity_is_refused(tmp_path: Path) -> None:
    folder = tmp_path
    source = Path(__file__).parents[2] / "src/interlink/partners/kits/pms_alpha"
    for name in ("mapping.toml", "inbound.schema.json"):
        (folder / name).write_text((source / name).read_text())
    text = (source / "kit.toml").read_text().replace('entity = "booking"', 'entity = "stay"')
    (folder / "kit.toml").write_text(text)
    with pytest.raises(InvalidKit, match="reconciler: no entity 'stay'"):
        load_kit(folder)
