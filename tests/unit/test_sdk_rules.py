"""The SDK's rules without I/O: the drift check on small documents (each kind of drift named),
problem+json answers as exceptions, and the outbox relay's database URLs."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import msgspec
import pytest

from interlink_client import ApiError, NotFound, ServerError, Unprocessable
from interlink_client.drift import check
from interlink_client.errors import api_error
from interlink_client.models import Page
from interlink_client.operations import Operation
from interlink_client.outbox.relay import async_url


class Thing(msgspec.Struct, kw_only=True):
    id: str
    size: float
    note: str | None


class NewThing(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    size: int | None = None


CREATE = Operation[Thing]("POST", "/things", 201, Thing, NewThing)
LIST = Operation[Page[Thing]]("GET", "/things", 200, Page[Thing], query=("cursor",))
SPEC: dict[str, Any] = {
    "paths": {
        "/things": {
            "post": {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}
                },
                "responses": {
                    "201": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Out"}}
                        }
                    }
                },
            },
            "get": {
                "parameters": [{"in": "query", "name": "cursor"}],
                "responses": {
                    "200": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["data", "next_cursor"],
                                    "properties": {
                                        "data": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Out"},
                                        },
                                        "next_cursor": {
                                            "oneOf": [{"type": "string"}, {"type": "null"}]
                                        },
                                    },
                                }
                            }
                        }
                    }
                },
            },
        }
    },
    "components": {
        "schemas": {
            "In": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
            },
            "Out": {
                "type": "object",
                "required": ["id", "size", "note"],
                "properties": {
                    "id": {"type": "string"},
                    "size": {"type": "number"},
                    "note": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                },
            },
        }
    },
}


def test_a_matching_document_has_no_drift() -> None:
    assert check(SPEC, [CREATE, LIST]) == []


def test_each_kind_of_drift_is_named() -> None:
    spec = copy.deepcopy(SPEC)
    schemas = spec["components"]["schemas"]
    schemas["In"]["required"].append("colour")  # the server now requires a field
    schemas["In"]["properties"]["size"] = {"type": "string"}  # and types one differently
    schemas["Out"]["required"].remove("note")  # may leave out one the client requires
    schemas["Out"]["properties"]["id"] = {"type": "integer"}  # answers a type it cannot decode
    spec["paths"]["/things"]["get"]["parameters"] = []  # drops a query parameter
    assert check(spec, [CREATE, LIST]) == [
        "POST /things body.colour: required by the server, not always sent by the client",
        "POST /things body.size: the client may send ['integer'], refused",
        "POST /things 201.id: the server may answer ['integer'], the client cannot decode it",
        "POST /things 201.note: required by the client, optional in the server's answer",
        "GET /things: query parameter 'cursor' unknown to the server",
        "GET /things 200.data.id: the server may answer ['integer'], the client cannot decode it",
        "GET /things 200.data.note: required by the client, optional in the server's answer",
    ]


def test_a_renamed_path_or_status_is_drift() -> None:
    spec = copy.deepcopy(SPEC)
    spec["paths"]["/stuff"] = spec["paths"].pop("/things")
    assert check(spec, [CREATE]) == ["POST /things: no such operation on the server"]
    spec = copy.deepcopy(SPEC)
    spec["paths"]["/things"]["post"]["responses"]["200"] = spec["paths"]["/things"]["post"][
        "responses"
    ].pop("201")
    assert check(spec, [CREATE]) == ["POST /things: the server does not answer 201"]


def _answer(status: int, body: bytes, ctype: str = "application/problem+json") -> httpx.Response:
    return httpx.Response(status, content=body, headers={"content-type": ctype})


def test_problem_json_becomes_a_typed_exception() -> None:
    problem = {
        "type": "https://interlink.dev/problems/unprocessable",
        "title": "Unprocessable",
        "status": 422,
        "detail": "events[2]/data/guest: required",
        "errors": [{"index": 2}],
    }
    error = api_error(_answer(422, msgspec.json.encode(problem)))
    assert isinstance(error, Unprocessable)
    assert (error.status, error.type, error.detail, error.errors) == (
        422,
        problem["type"],
        problem["detail"],
        [{"index": 2}],
    )
    assert isinstance(api_error(_answer(404, b'{"title":"Not Found"}')), NotFound)
    proxy = api_error(_answer(502, b"<html>bad gateway</html>", "text/html"))
    assert isinstance(proxy, ServerError) and proxy.retryable and "bad gateway" in proxy.detail
    teapot = api_error(_answer(418, b"{}"))
    assert type(teapot) is ApiError and not teapot.retryable


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("sqlite:///service.db", "sqlite+aiosqlite:///service.db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_relay_database_urls(given: str, used: str) -> None:
    assert async_url(given) == used


def test_relay_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="PostgreSQL and SQLite"):
        async_url("mysql://u@h/db")
