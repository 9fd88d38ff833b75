"""The two Slack app manifests (HTTP and Socket Mode) describe the same app; only how Slack reaches
calsync differs: request URLs to /slack/events, or none and Socket Mode on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

SLACK = Path(__file__).parents[1] / "slack"
HTTP, SOCKET = "manifest.yaml", "manifest-socket-mode.yaml"
EVENTS_URL = "https://calsync.example.com/slack/events"


def manifest(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((SLACK / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def scopes(app: dict[str, Any]) -> set[str]:
    return set(app["oauth_config"]["scopes"]["bot"])


def bot_events(app: dict[str, Any]) -> set[str]:
    return set(app["settings"]["event_subscriptions"]["bot_events"])


def commands(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The slash commands without their request URL."""
    return [{k: v for k, v in command.items() if k != "url"} for command in app["features"]["slash_commands"]]


def shortcuts(app: dict[str, Any]) -> list[dict[str, Any]]:
    return list(app["features"].get("shortcuts") or [])


def request_urls(app: dict[str, Any]) -> list[str | None]:
    """Every place a manifest can hold a URL Slack posts to: the commands', events' and interactivity's."""
    settings = app["settings"]
    return [
        *(command.get("url") for command in app["features"]["slash_commands"]),
        settings["event_subscriptions"].get("request_url"),
        settings["interactivity"].get("request_url"),
        settings["interactivity"].get("message_menu_options_url"),
    ]


@pytest.mark.parametrize(
    "part", [scopes, bot_events, commands, shortcuts, lambda app: app["display_information"]]
)
def test_both_manifests_describe_the_same_app(part: Any) -> None:
    assert part(manifest(HTTP)) == part(manifest(SOCKET))


def test_the_app_has_its_scopes_events_and_command() -> None:
    app = manifest(HTTP)
    assert {"chat:write", "commands", "im:history", "users:read.email", "app_mentions:read"} <= scopes(app)
    assert bot_events(app) == {"app_home_opened", "app_mention", "message.im"}
    assert [command["command"] for command in commands(app)] == ["/calsync"]


@pytest.mark.parametrize(
    ("name", "socket_mode", "urls"),
    [
        (HTTP, False, [EVENTS_URL, EVENTS_URL, EVENTS_URL, None]),
        (SOCKET, True, [None, None, None, None]),
    ],
)
def test_each_manifest_says_how_slack_reaches_calsync(
    name: str, socket_mode: bool, urls: list[str | None]
) -> None:
    app = manifest(name)
    assert app["settings"]["socket_mode_enabled"] is socket_mode
    assert app["settings"]["interactivity"]["is_enabled"] is True
    assert request_urls(app) == urls


@pytest.mark.parametrize(("name", "mode"), [(HTTP, "over HTTP"), (SOCKET, "over Socket Mode")])
def test_each_manifest_says_in_its_header_which_mode_it_is_for(name: str, mode: str) -> None:
    header = (SLACK / name).read_text(encoding="utf-8").split("\n", 1)[0]
    assert header.startswith("#") and mode in header
