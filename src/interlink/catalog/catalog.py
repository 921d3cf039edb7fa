"""Canonical event types and their versioned JSON Schemas, each compiled once (jsonschema-rs).

A schema file is ``<type>.v<version>.json``; files named ``*.defs.json`` hold shared parts that
the others ``$ref`` by relative URI. The newest version of a type is the one normalized events
are validated against and stamped with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec

from interlink.domain.publish import Violation

SCHEMA_BASE = "https://interlink.dev/schemas/"
_FILE = re.compile(r"(?P<type>[a-z0-9_]+(?:\.[a-z0-9_]+)+)\.v(?P<version>[1-9][0-9]*)\.json")
MAX_ERRORS = 5


class EventType(msgspec.Struct, frozen=True):
    type: str
    version: int
    title: str
    description: str
    schema: dict[str, Any]


class UnknownEventType(LookupError):
    pass


class EventCatalog:
    def __init__(self, schemas: Mapping[str, dict[str, Any]]) -> None:
        """``schemas`` maps file names (``booking.created.v1.json``, ``x.defs.json``) to schemas."""
        registry = jsonschema_rs.Registry([(SCHEMA_BASE + name, s) for name, s in schemas.items()])
        self._types: dict[str, dict[int, EventType]] = {}
        self._validators: dict[tuple[str, int], jsonschema_rs.Validator] = {}
        for name, schema in sorted(schemas.items()):
            if name.endswith(".defs.json"):
                continue
            match = _FILE.fullmatch(name)
            if match is None:
                raise ValueError(f"{name}: a schema file is named <type>.v<version>.json")
            event_type = EventType(
                type=match["type"],
                version=int(match["version"]),
                title=str(schema.get("title", match["type"])),
                description=str(schema.get("description", "")),
                schema=schema,
            )
            self._types.setdefault(event_type.type, {})[event_type.version] = event_type
            self._validators[(event_type.type, event_type.version)] = jsonschema_rs.validator_for(
                schema, validate_formats=True, registry=registry, base_uri=SCHEMA_BASE + name
            )

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> EventCatalog:
        return cls({p.name: json.loads(p.read_text()) for p in paths})

    @classmethod
    def builtin(cls) -> EventCatalog:
        folder = resources.files("interlink.catalog") / "schemas"
        return cls(
            {
                f.name: json.loads(f.read_text())
                for f in folder.iterdir()
                if f.name.endswith(".json")
            }
        )

    def types(self) -> list[EventType]:
        return [t for versions in self._types.values() for t in versions.values()]

    def versions(self, event_type: str) -> list[EventType]:
        return sorted(self._types.get(event_type, {}).values(), key=lambda t: t.version)

    def latest(self, event_type: str) -> EventType:
        versions = self.versions(event_type)
        if not versions:
            raise UnknownEventType(f"no event type '{event_type}' in the catalog")
        return versions[-1]

    def errors(self, event_type: str, version: int, data: object) -> list[str]:
        """What is wrong with ``data`` as this type and version (empty when it is valid)."""
        return [
            f"{v.path.removeprefix('/') or '(root)'}: {v.message}"
            for v in self.violations(event_type, version, data)
        ]

    def violations(self, event_type: str, version: int, data: object) -> list[Violation]:
        """Where ``data`` breaks this type and version (JSON Pointers; empty when valid)."""
        validator = self._validators.get((event_type, version))
        if validator is None:
            raise UnknownEventType(f"no event type '{event_type}' v{version} in the catalog")
        out = []
        for error in validator.iter_errors(data):
            out.append(Violation(_pointer(error.instance_path), error.message))
            if len(out) == MAX_ERRORS:
                break
        return out

    def check(self, event_type: str, data: object) -> tuple[int, list[Violation]] | None:
        """For a published event (domain.publish.Schemas): None when the type is not in the
        catalog, else its newest version and what in ``data`` breaks it."""
        versions = self._types.get(event_type)
        if not versions:
            return None
        version = max(versions)
        return version, self.violations(event_type, version, data)


def _pointer(parts: Iterable[str | int]) -> str:
    """An RFC 6901 JSON Pointer ('' is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
