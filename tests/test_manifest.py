"""manifest.json is a valid Slack app manifest and matches the routing table."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bot.slack.access import BOT_SCOPES
from handlers.routes import bot_events, slash_commands

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())


@pytest.mark.skipif(not SCHEMA.exists(), reason=f"Slack's manifest schema is not at {SCHEMA}")
def test_manifest_validates_against_slacks_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(MANIFEST, schema)


def test_routing_table_and_manifest_commands_are_the_same_set() -> None:
    declared = {c["command"] for c in MANIFEST["features"]["slash_commands"]}
    assert declared == slash_commands()
    assert all(c.get("usage_hint") for c in MANIFEST["features"]["slash_commands"])


def test_socket_mode_and_interactivity_without_public_urls() -> None:
    settings = MANIFEST["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert "request_url" not in settings["interactivity"]
    assert all("url" not in c for c in MANIFEST["features"]["slash_commands"])


def test_bot_scopes_are_only_what_the_robot_calls() -> None:
    # commands: slash commands; chat:write(.public): root and thread messages in any public
    # channel; files:write: the failed deploy's log; usergroups:read: deployers given as groups.
    assert set(MANIFEST["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "chat:write.public",
        "files:write",
        "usergroups:read",
    }


def test_check_online_asks_slack_for_exactly_the_manifests_bot_scopes() -> None:
    assert sorted(BOT_SCOPES) == sorted(MANIFEST["oauth_config"]["scopes"]["bot"])


def test_home_tab_and_its_event_without_a_public_url() -> None:
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    # Refusals of Home clicks arrive in the Messages tab; nobody needs to write to the robot there.
    assert MANIFEST["features"]["app_home"]["messages_tab_read_only_enabled"] is True
    events = MANIFEST["settings"]["event_subscriptions"]
    assert set(events["bot_events"]) == bot_events() == {"app_home_opened"}
    assert "request_url" not in events
