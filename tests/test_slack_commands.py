"""The `/deploy` grammar of DESIGN §2, its errors, and the Deploy button value."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.errors import BadCommand, InvalidDuration, InvalidRef, InvalidRepoName, RequestError
from bot.slack.blocks.replies import HELP_TEXT
from bot.slack.commands import (
    CancelCommand,
    Command,
    DeployCommand,
    HelpCommand,
    LockCommand,
    StatsCommand,
    StatusCommand,
    UnlockCommand,
    WhereCommand,
    parse_deploy,
    parse_status,
)
from bot.slack.ids import (
    DEPLOY_ACTION_PATTERN,
    decode_deploy_value,
    deploy_action_id,
    encode_deploy_value,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
USAGE = (
    "Usage: `/deploy <repo>[@<ref>] [to <env>][!]`, `/deploy cancel <id>`, "
    "`/deploy lock <repo> [to <env>] [for <duration>] [: reason]`, `/deploy unlock <repo> [to <env>]`, "
    "`/deploy where <repo>`, `/deploy rollback <repo> [to <env>]`, "
    "`/deploy changes <repo> [to <env>]`, `/deploy approve <id>`, `/deploy reject <id> [: reason]`, "
    "`/deploy stats [<repo>] [<env>]`, `/deploy help`."
)
DEPLOY_USAGE = "Usage: `/deploy <repo>[@<ref>] [to <env>][!]`"
LOCK_USAGE = "Usage: `/deploy lock <repo> [to <env>] [for <duration>] [: reason]`"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme/api", DeployCommand("acme/api")),
        ("api", DeployCommand("api")),
        ("acme/api@main", DeployCommand("acme/api", "main")),
        (f"acme/api@{SHA}", DeployCommand("acme/api", SHA)),
        ("acme/api@release/1.2 to production", DeployCommand("acme/api", "release/1.2", "production")),
        ("acme/api to staging", DeployCommand("acme/api", None, "staging")),
        ("acme/api to production!", DeployCommand("acme/api", None, "production", True)),
        ("acme/api to production !", DeployCommand("acme/api", None, "production", True)),
        ("acme/api!", DeployCommand("acme/api", None, None, True)),
        ("acme/api !", DeployCommand("acme/api", None, None, True)),
        ("acme/api@v1.0!", DeployCommand("acme/api", "v1.0", None, True)),
        ("  acme/api \t TO   production  ", DeployCommand("acme/api", None, "production")),
        ("cancel 42", CancelCommand(42)),
        ("cancel #42", CancelCommand(42)),
        ("CANCEL  7 ", CancelCommand(7)),
        ("lock acme/api", LockCommand("acme/api")),
        ("lock acme/api to production", LockCommand("acme/api", "production")),
        ("lock acme/api to production : db migration", LockCommand("acme/api", "production", "db migration")),
        ("lock acme/api: freeze: until friday", LockCommand("acme/api", None, "freeze: until friday")),
        ("lock acme/api : a &lt;b&gt; &amp; c", LockCommand("acme/api", None, "a <b> & c")),
        ("lock acme/api : ask <@U123ABC|bob> <!here>", LockCommand("acme/api", None, "ask @bob @here")),
        ("lock acme/api : see <https://x.io/a|x.io/a>", LockCommand("acme/api", None, "see x.io/a")),
        ("lock acme/api for 2h", LockCommand("acme/api", duration=timedelta(hours=2))),
        (
            "lock acme/api to production for 90s : db migration",
            LockCommand("acme/api", "production", "db migration", timedelta(seconds=90)),
        ),
        (
            "lock acme/api FOR 1h30m to staging: freeze",
            LockCommand("acme/api", "staging", "freeze", timedelta(minutes=90)),
        ),
        ("unlock acme/api", UnlockCommand("acme/api")),
        ("unlock acme/api to staging", UnlockCommand("acme/api", "staging")),
        ("where acme/api", WhereCommand("acme/api")),
        ("help", HelpCommand()),
        ("", HelpCommand()),
        ("   ", HelpCommand()),
        # Slack linkifies what looks like a domain or an e-mail; the label is what the user typed.
        ("acme/<http://web.io|web.io> to staging", DeployCommand("acme/web.io", None, "staging")),
        ("acme/<mailto:api@main.com|api@main.com>", DeployCommand("acme/api", "main.com")),
    ],
)
def test_every_form_parses(text: str, expected: Command) -> None:
    assert parse_deploy(text) == expected


def test_lock_reason_is_one_line_and_cut_at_200() -> None:
    command = parse_deploy("lock acme/api : " + "why\n" * 100)
    assert isinstance(command, LockCommand)
    assert len(command.reason) == 200
    assert command.reason.endswith("…")
    assert "\n" not in command.reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acme/api to", f"`/deploy acme/api to` needs an environment after `to`. {DEPLOY_USAGE}"),
        (
            "acme/api production",
            f"Unexpected `production` in `/deploy acme/api`; did you mean `to production`? {DEPLOY_USAGE}",
        ),
        ("acme/api to staging now", f"Unexpected `now` after `to staging`. {DEPLOY_USAGE}"),
        ("acme/api@", f"`/deploy acme/api@` needs a ref after `@`. {DEPLOY_USAGE}"),
        ("@main", f"`/deploy` needs a repo before `@`. {DEPLOY_USAGE}"),
        ("!", f"`/deploy !` needs a repo before `!`. {DEPLOY_USAGE}"),
        ("acme/api! to staging", f"`!` goes once, at the very end. {DEPLOY_USAGE}"),
        ("acme/api to staging!!", f"`!` goes once, at the very end. {DEPLOY_USAGE}"),
        (
            "--force acme/api",
            f"`/deploy` has no options; add `!` at the end to skip the CI gate. {DEPLOY_USAGE}",
        ),
        ("to staging", f"`/deploy` needs a repo before `to`. {DEPLOY_USAGE}"),
        (
            "acme/api to prod/x",
            "`prod/x` is not an environment name: use letters, digits, `.`, `_` and `-` (e.g. `production`).",
        ),
        ("cancel", "`/deploy cancel` needs a deploy id, e.g. `/deploy cancel 42`."),
        ("cancel abc", "`abc` is not a deploy id; use its number, e.g. `/deploy cancel 42`."),
        ("cancel 0", "`0` is not a deploy id; use its number, e.g. `/deploy cancel 42`."),
        ("cancel 1 2", "`/deploy cancel` takes one deploy id, e.g. `/deploy cancel 42`."),
        ("lock", f"`/deploy lock` needs a repo. {LOCK_USAGE}"),
        ("lock : reason", f"`/deploy lock` needs a repo. {LOCK_USAGE}"),
        ("lock acme/api to", f"`/deploy lock acme/api to` needs an environment after `to`. {LOCK_USAGE}"),
        ("lock acme/api!", f"`/deploy lock` cannot be forced with `!`. {LOCK_USAGE}"),
        (
            "lock acme/api production",
            f"Unexpected `production` in `/deploy lock acme/api`; did you mean `to production`? {LOCK_USAGE}",
        ),
        (
            "lock acme/api 2h",
            f"Unexpected `2h` in `/deploy lock acme/api`; did you mean `for 2h`? {LOCK_USAGE}",
        ),
        (
            "lock acme/api for",
            "`/deploy lock acme/api for` needs a duration (a number of days, hours, minutes or seconds, "
            "e.g. `30m`, `2h`, `1d`, `1h30m`, `90s` (at most 30 days)) after `for`. " + LOCK_USAGE,
        ),
        ("lock acme/api for 1h for 2h", f"`/deploy lock acme/api` takes one `for`. {LOCK_USAGE}"),
        ("lock acme/api to a to b", f"`/deploy lock acme/api` takes one `to`. {LOCK_USAGE}"),
        (
            "unlock acme/api : because",
            f"Only `/deploy lock` and `/deploy reject` take a `: reason`. {USAGE}",
        ),
        ("unlock", "`/deploy unlock` needs a repo. Usage: `/deploy unlock <repo> [to <env>]`"),
        ("where", "`/deploy where` needs exactly one repo. Usage: `/deploy where <repo>`"),
        ("where a b", "`/deploy where` needs exactly one repo. Usage: `/deploy where <repo>`"),
        ("help me", f"`/deploy help` takes nothing after it. {USAGE}"),
        ("where help", f"`help` is a command word, not a repo. {USAGE}"),
        (
            "<@U123ABC> to staging",
            "`/deploy` got a Slack link or mention (`<@U123ABC>`); type the repo and "
            f"environment as plain words. {USAGE}",
        ),
        (
            "<http://acme.io> to staging",
            "`/deploy` got a Slack link or mention (`<http://acme.io>`); type the "
            f"repo and environment as plain words. {USAGE}",
        ),
        ("“acme/api” to staging", "`/deploy` needs no quotes; type e.g. `/deploy acme/api to production`."),
        ("'acme/api'", "`/deploy` needs no quotes; type e.g. `/deploy acme/api to production`."),
        ("x" * 501, "`/deploy` text is too long (501 characters; at most 500)."),
    ],
)
def test_bad_commands_say_what_is_wrong_and_what_is_valid(text: str, message: str) -> None:
    with pytest.raises(BadCommand) as info:
        parse_deploy(text)
    assert str(info.value) == message
    assert isinstance(info.value, RequestError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("duration", "why"),
    [
        ("2x", "is not a lock duration"),
        ("2", "is not a lock duration"),
        ("-1h", "is not a lock duration"),
        ("1.5h", "is not a lock duration"),
        ("30m1h", "is not a lock duration"),
        ("0m", "is no time at all"),
        ("31d", "is longer than 30 days"),
        ("721h", "is longer than 30 days"),
    ],
)
def test_a_bad_lock_duration_is_refused_with_the_valid_forms(duration: str, why: str) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_deploy(f"lock acme/api to production for {duration} : freeze")
    message = str(info.value)
    assert message.startswith(f"`{duration}` {why}") and isinstance(info.value, RequestError)
    assert "`30m`, `2h`, `1d`" in message or "lock without `for`" in message


def test_bad_repo_and_ref_use_the_shared_validation() -> None:
    with pytest.raises(InvalidRepoName, match="is not a repo name"):
        parse_deploy("acme/a$b to staging")
    with pytest.raises(InvalidRef, match="is not a valid ref"):
        parse_deploy("acme/api@a..b")
    with pytest.raises(InvalidRef):
        parse_deploy("acme/api@-rf")


def test_help_text_shows_every_form() -> None:
    for form in (
        "/deploy <repo>[@<ref>] [to <env>][!]",
        "/deploy cancel <id>",
        "/deploy lock <repo>",
        "/deploy unlock <repo>",
        "/deploy where <repo>",
        "/deploy help",
        "/deploy-status",
    ):
        assert form in HELP_TEXT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", StatusCommand()),
        ("acme/api", StatusCommand("acme/api")),
        (" acme/api  production ", StatusCommand("acme/api", "production")),
        ("acme/api to production", StatusCommand("acme/api", "production")),
    ],
)
def test_status_forms(text: str, expected: StatusCommand) -> None:
    assert parse_status(text) == expected


def test_status_errors() -> None:
    with pytest.raises(BadCommand) as info:
        parse_status("a b c")
    assert str(info.value) == (
        "`/deploy-status` takes at most a repo and an environment. Usage: `/deploy-status [<repo>] [<env>]`"
    )
    with pytest.raises(InvalidRepoName):
        parse_status("a;b")
    with pytest.raises(BadCommand, match="too long"):
        parse_status("a" * 600)


def test_deploy_value_round_trips_and_stays_small() -> None:
    value = encode_deploy_value("acme/api", "production", SHA)
    assert len(value) <= 2000
    assert decode_deploy_value(value) == ("acme/api", "production", SHA)
    long_value = encode_deploy_value("a" * 39 + "/" + "b" * 100, "e" * 64, SHA)
    assert len(long_value) <= 2000


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not json",
        "[]",
        json.dumps({"repo": "acme/api", "env": "production"}),
        json.dumps({"repo": "acme/api", "env": "production", "sha": SHA, "force": True}),
        json.dumps({"repo": "acme/api", "env": "production", "sha": SHA[:39]}),
        json.dumps({"repo": "acme/api", "env": "production", "sha": "g" * 40}),
        json.dumps({"repo": "api", "env": "production", "sha": SHA}),
        json.dumps({"repo": "acme/api;rm", "env": "production", "sha": SHA}),
        json.dumps({"repo": "acme/api", "env": "prod uction", "sha": SHA}),
        json.dumps({"repo": "acme/api", "env": 1, "sha": SHA}),
        " " * 2001,
    ],
)
def test_tampered_deploy_values_are_refused(value: str) -> None:
    with pytest.raises(BadCommand) as info:
        decode_deploy_value(value)
    assert str(info.value) == (
        "This Deploy button is broken or out of date; use `/deploy <repo>@<sha> to <env>` instead."
    )


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode_deploy_value("acme/api", "production", "main")


def test_deploy_action_ids_match_the_routing_pattern() -> None:
    assert DEPLOY_ACTION_PATTERN.match(deploy_action_id("production"))
    assert DEPLOY_ACTION_PATTERN.match("deploy_from_announcement")
    assert not DEPLOY_ACTION_PATTERN.match("deploy_cancel")
    assert not DEPLOY_ACTION_PATTERN.match("deploy_from_announcement:a b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stats", StatsCommand()),
        ("STATS acme/api", StatsCommand("acme/api")),
        ("stats acme/api production", StatsCommand("acme/api", "production")),
        ("stats acme/api to staging", StatsCommand("acme/api", "staging")),
        ("stats to staging", StatsCommand(None, "staging")),
    ],
)
def test_stats_forms(text: str, expected: StatsCommand) -> None:
    assert parse_deploy(text) == expected
    assert "`/deploy stats [<repo>] [<env>]`" in HELP_TEXT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stats a b c", "`/deploy stats` takes at most a repo and an environment."),
        ("stats acme/api!", "`/deploy stats` cannot be forced with `!`."),
        ("stats acme/api to", "`/deploy stats` needs an environment after `to`."),
        ("stats to", "`/deploy stats` needs an environment after `to`."),
        ("stats lock", "`lock` is a command word, not a repo."),
        ("stats acme/api pr$d", "`pr$d` is not an environment name"),
        ("lock stats", "`stats` is a command word, not a repo."),
    ],
)
def test_stats_errors(text: str, message: str) -> None:
    with pytest.raises(BadCommand) as info:
        parse_deploy(text)
    assert str(info.value).startswith(message)
