"""The partner kit record, how a kit folder is read, and the registry of installed kits.

A kit folder holds ``kit.toml`` (name, version, the source defaults — verifier and envelope —,
the entities' state machines, and either ``mapping = "mapping.toml"`` or ``normalizer =
"package.module:Class"``) and the files it names (an inbound JSON Schema, the mapping file).
Kits are the built-in ones in ``partners/kits/`` plus those other packages register under the
``interlink.partner_kits`` entry-point group: the entry point names a ``PartnerKit``, a callable
returning one, or a kit folder.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata, resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import structlog

from interlink.domain.entity_state import Machine, Rule
from interlink.domain.models import Envelope
from interlink.partners import mapping
from interlink.partners.hydration import PartnerApi, check_api
from interlink.partners.normalizer import Canonical, Normalizer

log = structlog.get_logger("interlink.partners")

ENTRY_POINT_GROUP = "interlink.partner_kits"
KIT_FILE = "kit.toml"


class InvalidKit(ValueError):
    pass


class _EventStateFile(msgspec.Struct, forbid_unknown_fields=True):
    state: str | None = None
    state_from: str | None = None  # a field of the canonical data holding the state


class _EntityFile(msgspec.Struct, forbid_unknown_fields=True):
    initial: list[str]
    transitions: dict[str, list[str]]
    events: dict[str, _EventStateFile]
    rule: Rule = Rule.QUARANTINE
    order_by: str = "occurred_at"  # or a field of the canonical data (the partner's revision)


class _SourceFile(msgspec.Struct, forbid_unknown_fields=True):
    verifier: str | None = None
    verifier_config: dict[str, Any] = msgspec.field(default_factory=dict)
    envelope: Envelope | None = None


class _ReconcilerFile(msgspec.Struct, forbid_unknown_fields=True):
    entity: str
    listing: str  # the API path that lists recently changed items, under the connection's URL
    payload: dict[str, Any]  # a listed item as the webhook the kit's mapping reads
    create: str | None = None  # the canonical type that introduces an entity not seen yet
    since_param: str = "updated_since"  # epoch seconds
    items: str = "data"  # where the answer holds the page's items
    next_cursor: str = "next_cursor"  # where it holds the next page's cursor (null: the last)
    cursor_param: str = "cursor"


class _KitFile(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: str
    title: str = ""
    description: str = ""
    mapping: str | None = None
    normalizer: str | None = None
    inbound_schema: str | None = None
    source: _SourceFile = msgspec.field(default_factory=_SourceFile)
    entities: dict[str, _EntityFile] = msgspec.field(default_factory=dict)
    api: PartnerApi | None = None
    reconciler: _ReconcilerFile | None = None


@dataclass(frozen=True)
class EntityGate:
    """Which canonical events move an entity, to which state, in which order."""

    machine: Machine
    states: Mapping[str, _EventStateFile]
    order_by: str

    def target(self, event: Canonical) -> str | None:
        how = self.states.get(event.type)
        if how is None:  # held under an earlier version of the kit that mapped this type
            return None
        if how.state is not None:
            return how.state
        value = _data_field(event.data, how.state_from or "")
        return value if isinstance(value, str) else None

    def order(self, event: Canonical) -> float | None:
        if self.order_by == "occurred_at":
            return event.occurred_at
        value = _data_field(event.data, self.order_by)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None


ITEM = "$item"


@dataclass(frozen=True)
class Reconciler:
    """How reconciliation pulls a kit's entities from the partner's API, declared as data.

    ``payload`` turns a listed item into the webhook the kit's mapping reads — a string
    ``"$item"`` is the item, ``"$item.a.b"`` a field of it, any other value a constant, tables
    nest — so a fetched item becomes its canonical event through the kit's one mapping.
    """

    entity: str
    listing: str
    payload: Mapping[str, Any]
    create: str | None = None
    since_param: str = "updated_since"
    items: str = "data"
    next_cursor: str = "next_cursor"
    cursor_param: str = "cursor"

    def webhook_for(self, item: Any) -> Any:
        return _fill(self.payload, item)

    def page(self, answer: Any) -> tuple[list[Any], str | None]:
        """The items of one page of the listing and the next page's cursor (None: the last)."""
        items = _data_field(answer, self.items) if isinstance(answer, Mapping) else None
        if not isinstance(items, list):
            raise ValueError(f"the listing's answer has no list at '{self.items}'")
        cursor = _data_field(answer, self.next_cursor)
        return items, None if cursor in (None, "") else str(cursor)


def _fill(template: Any, item: Any) -> Any:
    if isinstance(template, Mapping):
        return {k: _fill(v, item) for k, v in template.items()}
    if template == ITEM:
        return item
    if isinstance(template, str) and template.startswith(ITEM + "."):
        return _data_field(item, template[len(ITEM) + 1 :]) if isinstance(item, Mapping) else None
    return template


def _data_field(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class PartnerKit:
    name: str
    version: str
    normalizer: Normalizer
    title: str = ""
    description: str = ""
    inbound_schema: dict[str, Any] | None = None
    verifier: str | None = None
    verifier_config: Mapping[str, Any] = field(default_factory=dict)
    envelope: Envelope | None = None
    entities: Mapping[str, EntityGate] = field(default_factory=dict)
    # Thin notifications: what to fetch from the partner's API before normalizing.
    api: PartnerApi | None = None
    reconciler: Reconciler | None = None
    inbound: jsonschema_rs.Validator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _fits("kit name", self.name, MAX_NAME)
        _fits("kit version", self.version, MAX_VERSION)
        if self.inbound is None and self.inbound_schema is not None:
            validator = jsonschema_rs.validator_for(self.inbound_schema, validate_formats=True)
            object.__setattr__(self, "inbound", validator)

    def entity_for(self, event_type: str) -> tuple[str, EntityGate] | None:
        for name, gate in self.entities.items():
            if event_type in gate.states:
                return name, gate
        return None


# The columns that hold them (storage/tables.py): a kit that does not fit is refused at load.
MAX_NAME = 100
MAX_VERSION = 40


def _fits(what: str, value: str, limit: int) -> None:
    if not value or len(value) > limit:
        raise ValueError(f"{what} '{value[:40]}' must have 1 to {limit} characters")


def _entity(name: str, spec: _EntityFile) -> EntityGate:
    _fits("entity name", name, MAX_NAME)
    for state in [*spec.initial, *spec.transitions]:
        _fits(f"entities.{name}: state", state, MAX_NAME)
    machine = Machine(
        name=name,
        initial=frozenset(spec.initial),
        transitions={s: frozenset(t) for s, t in spec.transitions.items()},
        rule=spec.rule,
    )
    for event_type, how in spec.events.items():
        if (how.state is None) == (how.state_from is None):
            raise ValueError(f"entities.{name}.events.'{event_type}': give 'state' or 'state_from'")
        if how.state is not None and how.state not in machine.states:
            raise ValueError(f"entities.{name}.events.'{event_type}': unknown state '{how.state}'")
    return EntityGate(machine=machine, states=spec.events, order_by=spec.order_by)


def _reconciler(
    spec: _ReconcilerFile | None, entities: Mapping[str, EntityGate]
) -> Reconciler | None:
    if spec is None:
        return None
    gate = entities.get(spec.entity)
    if gate is None:
        raise ValueError(f"reconciler: no entity '{spec.entity}' is declared")
    if spec.create is not None and spec.create not in gate.states:
        raise ValueError(f"reconciler.create: '{spec.create}' does not move a {spec.entity}")
    return Reconciler(
        entity=spec.entity,
        listing=spec.listing,
        payload=spec.payload,
        create=spec.create,
        since_param=spec.since_param,
        items=spec.items,
        next_cursor=spec.next_cursor,
        cursor_param=spec.cursor_param,
    )


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"normalizer '{target}' must be 'package.module:Name'")
    return getattr(importlib.import_module(module), attr)


def load_kit(folder: Traversable | Path) -> PartnerKit:
    """Reads a kit folder (``kit.toml`` and the files it names); InvalidKit if it is wrong."""
    where = str(folder)
    try:
        spec = msgspec.convert(tomllib.loads((folder / KIT_FILE).read_text()), _KitFile)
        if (spec.mapping is None) == (spec.normalizer is None):
            raise ValueError("a kit names either a 'mapping' file or a Python 'normalizer'")
        normalizer: Normalizer
        if spec.mapping is not None:
            text = (folder / spec.mapping).read_text()
            normalizer = mapping.load(text, where=f"{spec.name}/{spec.mapping}")
        else:
            made = _import(spec.normalizer or "")
            normalizer = made() if isinstance(made, type) else made
        entities = {name: _entity(name, e) for name, e in spec.entities.items()}
        schema = None
        if spec.inbound_schema is not None:
            schema = json.loads((folder / spec.inbound_schema).read_text())
        return PartnerKit(
            name=spec.name,
            version=spec.version,
            title=spec.title,
            description=spec.description,
            normalizer=normalizer,
            inbound_schema=schema,
            verifier=spec.source.verifier,
            verifier_config=spec.source.verifier_config,
            envelope=spec.source.envelope,
            entities=entities,
            api=check_api(spec.api) if spec.api is not None else None,
            reconciler=_reconciler(spec.reconciler, entities),
        )
    except InvalidKit:
        raise
    except (OSError, ValueError, ImportError, AttributeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidKit(f"{where}: {exc}") from None


def builtin_kits() -> list[PartnerKit]:
    folder = resources.files("interlink.partners") / "kits"
    return [load_kit(f) for f in sorted(folder.iterdir(), key=lambda f: f.name) if _is_kit(f)]


def _is_kit(folder: Traversable) -> bool:
    return folder.is_dir() and (folder / KIT_FILE).is_file()


def _from_entry_point(loaded: Any) -> PartnerKit:
    if isinstance(loaded, PartnerKit):
        return loaded
    if isinstance(loaded, str | Path | Traversable):
        return load_kit(Path(loaded) if isinstance(loaded, str) else loaded)
    if callable(loaded):
        return _from_entry_point(loaded())
    raise InvalidKit(f"an entry point gave {type(loaded).__name__}, not a partner kit")


def plugin_kits(
    entry_points: Callable[[], Iterable[metadata.EntryPoint]] | None = None,
) -> list[PartnerKit]:
    """Kits registered by other packages; one that fails to load is logged and left out."""
    found = entry_points() if entry_points else metadata.entry_points(group=ENTRY_POINT_GROUP)
    kits = []
    for ep in found:
        try:
            kits.append(_from_entry_point(ep.load()))
        except Exception as exc:
            log.error("partner_kit.load_failed", entry_point=ep.name, error=str(exc))
    return kits


class KitRegistry:
    """The installed kits by name; a later registration of a name replaces the earlier one."""

    def __init__(self, kits: Iterable[PartnerKit] = ()) -> None:
        self._kits: dict[str, PartnerKit] = {}
        for kit in kits:
            self.register(kit)

    @classmethod
    def installed(cls) -> KitRegistry:
        return cls([*builtin_kits(), *plugin_kits()])

    def register(self, kit: PartnerKit) -> None:
        self._kits[kit.name] = kit

    def get(self, name: str) -> PartnerKit | None:
        return self._kits.get(name)

    def all(self) -> list[PartnerKit]:
        return [self._kits[n] for n in sorted(self._kits)]
