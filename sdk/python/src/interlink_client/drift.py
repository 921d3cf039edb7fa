"""Holds the client's declared operations (operations.py) to a server's OpenAPI document.

For each operation: the method and path exist, the expected success status is documented, every
query parameter is one the server takes; every field the client sends is in the request body's
schema with a type it accepts, and every field the server requires the client sends; every
field the client decodes is in the answer's schema, required there when the client cannot do
without it, with a type the client decodes. :func:`check` returns what is wrong, one line each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from msgspec import inspect as mi

from interlink_client.operations import OPERATIONS, Operation

Schema = dict[str, Any]

_SCALARS: dict[type[mi.Type], str] = {
    mi.StrType: "string",
    mi.IntType: "integer",
    mi.FloatType: "number",
    mi.BoolType: "boolean",
    mi.NoneType: "null",
    mi.ListType: "array",
    mi.DictType: "object",
    mi.StructType: "object",
}
_ANY = frozenset({"string", "integer", "number", "boolean", "null", "array", "object"})


def _resolve(spec: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _spec_types(spec: Schema, schema: Schema) -> frozenset[str]:
    """The JSON types a schema admits (enums admit their values' types; no type: any)."""
    schema = _resolve(spec, schema)
    for union in ("oneOf", "anyOf"):
        if union in schema and "type" not in schema:
            return frozenset().union(*(_spec_types(spec, s) for s in schema[union]))
    if "enum" in schema and "type" not in schema:
        return frozenset("null" if v is None else "string" for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return _ANY
    kinds = frozenset([kind] if isinstance(kind, str) else kind)
    return kinds | {"integer"} if "number" in kinds else kinds  # a number may be an integer


def _sdk_types(t: mi.Type) -> frozenset[str]:
    if isinstance(t, mi.UnionType):
        return frozenset().union(*(_sdk_types(u) for u in t.types))
    if isinstance(t, mi.AnyType):
        return _ANY
    kinds = frozenset([_SCALARS.get(type(t), "?")])
    return kinds | {"integer"} if "number" in kinds else kinds  # a float field takes 1


def _structs(t: mi.Type) -> Iterable[mi.StructType]:
    """The structs in a field's type (itself, a union's members, a list's items)."""
    if isinstance(t, mi.StructType):
        yield t
    elif isinstance(t, mi.UnionType):
        for u in t.types:
            yield from _structs(u)
    elif isinstance(t, mi.ListType):
        yield from _structs(t.item_type)


def _item_schema(spec: Schema, schema: Schema, struct: mi.StructType) -> Schema:
    """A list's item schema; a generic listing (items untyped) is matched against the component
    the model names as its server schema."""
    items = schema.get("items", {})
    if items:
        return _resolve(spec, items)
    name = getattr(struct.cls, "schema_name", None)
    return _resolve(spec, {"$ref": f"#/components/schemas/{name}"}) if name else {}


def _object_schema(spec: Schema, schema: Schema) -> Schema:
    """A nullable object's (``oneOf: [object, null]``) object member; any other schema as is."""
    schema = _resolve(spec, schema)
    union: list[Schema] = schema.get("oneOf") or schema.get("anyOf") or []
    members = [_resolve(spec, m) for m in union]
    objects = [m for m in members if m.get("type") in ("object", "array")]
    return objects[0] if "properties" not in schema and objects else schema


def _decoded(spec: Schema, where: str, schema: Schema, struct: mi.StructType) -> list[str]:
    schema = _resolve(spec, schema)
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    problems = []
    for field in struct.fields:
        at = f"{where}.{field.encode_name}"
        if field.encode_name not in props:
            problems.append(f"{at}: decoded by the client, not in the server's answer")
            continue
        if field.required and field.encode_name not in required:
            problems.append(f"{at}: required by the client, optional in the server's answer")
        extra = _spec_types(spec, props[field.encode_name]) - _sdk_types(field.type)
        if extra:
            problems.append(
                f"{at}: the server may answer {sorted(extra)}, the client cannot decode it"
            )
        for inner in _structs(field.type):
            sub = _object_schema(spec, props[field.encode_name])
            if sub.get("type") == "array":
                sub = _item_schema(spec, sub, inner)
            problems += _decoded(spec, at, sub, inner)
    return problems


def _sent(spec: Schema, where: str, schema: Schema, struct: mi.StructType) -> list[str]:
    schema = _resolve(spec, schema)
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    names = {f.encode_name: f for f in struct.fields}
    problems = [
        f"{where}.{name}: required by the server, not always sent by the client"
        for name in sorted(required)
        if name not in names or not names[name].required
    ]
    for name, field in names.items():
        if name not in props:
            problems.append(f"{where}.{name}: sent by the client, unknown to the server")
            continue
        # Optional fields at their default (None) are not sent (omit_defaults): no null goes out.
        sent = _sdk_types(field.type) - ({"null"} if not field.required else set())
        missing = sent - _spec_types(spec, props[name])
        if missing:
            problems.append(f"{where}.{name}: the client may send {sorted(missing)}, refused")
        for inner in _structs(field.type):
            sub = _resolve(spec, props[name])
            problems += _sent(spec, f"{where}.{name}", sub.get("items", sub), inner)
    return problems


def check_operation(spec: Schema, op: Operation[Any]) -> list[str]:
    documented = spec.get("paths", {}).get(op.path, {}).get(op.method.lower())
    if documented is None:
        return [f"{op.name}: no such operation on the server"]
    problems = []
    responses = documented.get("responses", {})
    if str(op.status) not in responses:
        problems.append(f"{op.name}: the server does not answer {op.status}")
    params = {(p["in"], p["name"]) for p in documented.get("parameters", [])}
    problems += [
        f"{op.name}: query parameter {name!r} unknown to the server"
        for name in op.query
        if ("query", name) not in params
    ]
    if op.sends is not None:
        body = documented.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            problems.append(f"{op.name}: the server takes no JSON body")
        else:
            sends = mi.type_info(op.sends)
            assert isinstance(sends, mi.StructType)
            problems += _sent(spec, f"{op.name} body", body["schema"], sends)
    if op.decodes is not None and str(op.status) in responses:
        answer = responses[str(op.status)].get("content", {}).get("application/json")
        if answer is None:
            problems.append(f"{op.name}: the server's {op.status} has no JSON body")
        else:
            info = mi.type_info(op.decodes)
            assert isinstance(info, mi.StructType)
            problems += _decoded(spec, f"{op.name} {op.status}", answer["schema"], info)
    return problems


def check(spec: Schema, operations: Iterable[Operation[Any]] = OPERATIONS) -> list[str]:
    """What the server's document ``spec`` contradicts in the client: empty when none."""
    return [problem for op in operations for problem in check_operation(spec, op)]


def check_json(document: bytes) -> list[str]:
    return check(msgspec.json.decode(document))
