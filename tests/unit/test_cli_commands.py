"""The CLI's commands: the requests they make, their output formats, their help, and that
client commands never load the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import typer
from typer.testing import CliRunner

from interlink import cli
from interlink.cli import _api

ENDPOINT = {"id": "ep_1", "kind": "push", "url": "https://example.com/hooks", "status": "paused"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        if request.url.path.endswith("/ep_1") or request.url.path.endswith("/retry"):
            return httpx.Response(200, json=ENDPOINT)
        rows = [
            ENDPOINT,
            {"id": "ep_22", "kind": "push", "url": "https://b.example", "status": "active"},
        ]
        return httpx.Response(200, json={"data": rows, "next_cursor": None})

    def client(config: str | None, admin: bool = False) -> httpx.Client:
        headers = {"Authorization": "Bearer admin" if admin else "Bearer tenant"}
        transport = httpx.MockTransport(handler)
        return httpx.Client(base_url="http://interlink", transport=transport, headers=headers)

    monkeypatch.setattr(_api, "client", client)
    monkeypatch.delenv("INTERLINK_OUTPUT", raising=False)
    return seen


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli.app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["endpoints", "pause", "ep_1"], "PATCH", "/api/v1/endpoints/ep_1", {"status": "paused"}),
        (["endpoints", "resume", "ep_1"], "PATCH", "/api/v1/endpoints/ep_1", {"status": "active"}),
        (
            [
                "endpoints",
                "update",
                "ep_1",
                "--url",
                "https://n.example",
                "--retry-schedule",
                "0,5",
            ],
            "PATCH",
            "/api/v1/endpoints/ep_1",
            {"url": "https://n.example", "retry_schedule": [0.0, 5.0]},
        ),
        (
            ["endpoints", "update", "ep_1", "--no-rate-limit"],
            "PATCH",
            "/api/v1/endpoints/ep_1",
            {"rate_limit": None},
        ),
        (["endpoints", "delete", "ep_1"], "DELETE", "/api/v1/endpoints/ep_1", None),
        (["endpoints", "show", "ep_1"], "GET", "/api/v1/endpoints/ep_1", None),
        (["subscriptions", "delete", "sub_1"], "DELETE", "/api/v1/subscriptions/sub_1", None),
        (
            ["subscriptions", "create", "ep_1", "--type", "payment.*", "--filter", "data.a > 1"],
            "POST",
            "/api/v1/subscriptions",
            {"endpoint_id": "ep_1", "event_types": ["payment.*"], "filter": "data.a > 1"},
        ),
        (
            ["subscriptions", "update", "sub_1", "--filter", "", "--transform", "{'a': b}"],
            "PATCH",
            "/api/v1/subscriptions/sub_1",
            {"filter": None, "transform": "{'a': b}"},
        ),
        (
            ["subscriptions", "preview", "sub_1", "--event", '{"type": "a.b", "data": {}}'],
            "POST",
            "/api/v1/subscriptions/sub_1/preview",
            {"event": {"type": "a.b", "data": {}}},
        ),
        (
            ["segments", "create", "premium", "data.tier == 1", "--description", "d"],
            "POST",
            "/api/v1/segments",
            {"name": "premium", "expression": "data.tier == 1", "description": "d"},
        ),
        (
            ["segments", "update", "premium", "--expression", "true"],
            "PATCH",
            "/api/v1/segments/premium",
            {"expression": "true"},
        ),
        (["segments", "delete", "premium"], "DELETE", "/api/v1/segments/premium", None),
        (["sources", "delete", "src_1"], "DELETE", "/api/v1/sources/src_1", None),
        (["events", "show", "evt_1"], "GET", "/api/v1/events/evt_1", None),
        (["events", "replay", "evt_1"], "POST", "/api/v1/events/evt_1/replay", None),
        (["deliveries", "retry", "dlv_1"], "POST", "/api/v1/deliveries/dlv_1/retry", None),
        (["deliveries", "show", "dlv_1"], "GET", "/api/v1/deliveries/dlv_1", None),
        (["tenants", "show", "ten_1"], "GET", "/api/v1/tenants/ten_1", None),
        (["tenants", "new-key", "ten_1"], "POST", "/api/v1/tenants/ten_1/keys", None),
        (
            ["endpoints", "rotate-secret", "ep_1", "--overlap", "3600"],
            "POST",
            "/api/v1/endpoints/ep_1/secret/rotate",
            {"overlap_seconds": 3600},
        ),
        (
            ["tenants", "new-key", "ten_1", "--label", "ci", "--expires-in", "3600"],
            "POST",
            "/api/v1/tenants/ten_1/keys",
            {"label": "ci", "expires_in_seconds": 3600},
        ),
        (
            ["tenants", "label-key", "ten_1", "key_1", "deploy bot"],
            "PATCH",
            "/api/v1/tenants/ten_1/keys/key_1",
            {"label": "deploy bot"},
        ),
        (
            ["tenants", "revoke-key", "ten_1", "key_1", "--as-tenant"],
            "DELETE",
            "/api/v1/tenants/ten_1/keys/key_1",
            None,
        ),
    ],
)
def test_a_command_makes_its_request(
    api: list[httpx.Request], args: list[str], method: str, path: str, body: Any
) -> None:
    invoke(*args)
    assert (api[0].method, api[0].url.path) == (method, path)
    assert (json.loads(api[0].content) if api[0].content else None) == body


def test_lists_take_their_filters(api: list[httpx.Request]) -> None:
    invoke("events", "list", "--type", "booking.*", "--source", "src_1", "--limit", "5")
    invoke("deliveries", "list", "--status", "dead", "--event", "evt_1")
    assert dict(api[0].url.params) == {"type": "booking.*", "source_id": "src_1", "limit": "5"}
    assert dict(api[1].url.params) == {"status": "dead", "event_id": "evt_1", "limit": "50"}


def test_tenant_commands_use_the_admin_key(api: list[httpx.Request]) -> None:
    invoke("tenants", "list")
    assert api[0].headers["authorization"] == "Bearer admin"


def test_update_with_nothing_to_change_says_so(api: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["endpoints", "update", "ep_1"])
    assert result.exit_code == 2 and "nothing to change" in result.output
    assert api == []


def test_json_is_the_default_and_table_on_request(api: list[httpx.Request]) -> None:
    listed = json.loads(invoke("endpoints", "list").output)
    assert [e["id"] for e in listed] == ["ep_1", "ep_22"]

    lines = invoke("endpoints", "list", "--output", "table").output.splitlines()
    header = ["ID", "KIND", "URL", "STATUS", "ORDERING", "CONCURRENCY", "DESCRIPTION"]
    assert lines[0].split() == header
    assert lines[1].split()[:4] == ["ep_1", "push", "https://example.com/hooks", "paused"]
    assert lines[2].index("https://b") == lines[1].index("https://e")  # aligned columns

    shown = invoke("endpoints", "show", "ep_1", "-o", "table").output.splitlines()
    assert shown == [
        "id:     ep_1",
        "kind:   push",
        "url:    https://example.com/hooks",
        "status: paused",
    ]

    by_env = invoke("endpoints", "list", env={"INTERLINK_OUTPUT": "table"}).output
    assert by_env.startswith("ID")


def test_every_list_and_show_takes_output() -> None:
    for path, command in _commands():
        if path and path[-1] in ("list", "show", "health", "attempts", "reconciliations"):
            names = {opt for p in command.params for opt in getattr(p, "opts", [])}
            assert "--output" in names, " ".join(path)


def _commands() -> list[tuple[list[str], click.Command]]:
    root = typer.main.get_command(cli.app)
    found: list[tuple[list[str], click.Command]] = []

    def walk(path: list[str], command: click.Command) -> None:
        found.append((path, command))
        # typer may vendor click: a group is what has subcommands
        for name, sub in getattr(command, "commands", {}).items():
            walk([*path, name], sub)

    walk([], root)
    return found


def test_every_command_says_what_it_does_without_type_noise() -> None:
    runner = CliRunner()
    for path, command in _commands():
        assert command.help or command.short_help, f"`interlink {' '.join(path)}` has no help"
        shown = runner.invoke(cli.app, [*path, "--help"], terminal_width=100).output
        for noise in ("<bool>", "<str>", "<int>", "<float>", "<path>", "``"):
            assert noise not in shown, f"{noise} in `interlink {' '.join(path)} --help`"
    top = runner.invoke(cli.app, ["--help"], prog_name="interlink").output
    assert "``" not in top and "Usage: interlink" in top


def test_version() -> None:
    from importlib.metadata import version

    assert invoke("--version").output.strip() == f"interlink {version('interlink')}"


def test_an_admin_command_elsewhere_makes_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INTERLINK_ADMIN_KEY", raising=False)
    result = CliRunner().invoke(cli.app, ["tenants", "list"], env={"INTERLINK_ADMIN_KEY": ""})
    assert result.exit_code == 2
    assert str(tmp_path / ".interlink" / "admin.key") in result.output.replace("\n", "")
    assert "INTERLINK_ADMIN_KEY" in result.output
    assert not (tmp_path / ".interlink").exists()


def test_client_commands_do_not_load_the_server() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from interlink.cli import app; import typer.main;"
            "typer.main.get_command(app);"
            "print(' '.join(m for m in ('litestar', 'sqlalchemy', 'uvicorn', 'asyncpg',"
            " 'interlink.app', 'rich') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == ""


def test_tls_is_verified_over_https_and_fails_closed_over_http() -> None:
    import ssl

    assert _api._tls("https://interlink.example") is True
    plain = _api._tls("http://127.0.0.1:8400")
    assert isinstance(plain, ssl.SSLContext)
    # No CA bundle loaded (it costs a tenth of a second), and still nothing unverified.
    assert plain.verify_mode is ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0


def test_every_command_the_readme_names_exists() -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    named = re.findall(r"(?:^|[/` ])interlink ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", readme, re.M)
    assert len(named) > 20
    assert len(_commands()) > 60  # the walk sees every command
    commands = {tuple(path) for path, _ in _commands() if path}
    for group, command in named:
        assert (group,) in commands, f"`interlink {group}` is in the README, not in the CLI"
        if command and (group, command) not in commands:
            assert (group,) in commands and not any(
                p[0] == group and len(p) > 1 for p in commands
            ), f"`interlink {group} {command}` is in the README, not in the CLI"
