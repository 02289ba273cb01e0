"""Hostile input, property-based: command text, refs and repo names, robot.yaml, Block Kit, build output."""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Settings, load_settings
from bot.config.loader import MAX_PROBLEMS
from bot.errors import ConfigError, InvalidRef, InvalidRepoName, RequestError
from bot.models import LINE_CUT_MARK as CUT_MARK
from bot.models import (
    MAX_LINE,
    CommandStep,
    Deploy,
    DeployRequest,
    DeployState,
    EnvironmentView,
    Lock,
    MergedPull,
    Source,
    StepStatus,
)
from bot.slack.blocks.announcements import merge_announcement
from bot.slack.blocks.primitives import Message
from bot.slack.blocks.replies import error_text, status_blocks, where_blocks
from bot.slack.blocks.thread import StepState, StepView, progress_message, root_message
from bot.slack.commands import (
    CancelCommand,
    DeployCommand,
    HelpCommand,
    LockCommand,
    StatusCommand,
    UnlockCommand,
    WhereCommand,
    parse_deploy,
    parse_status,
)
from bot.slack.text import escape, is_user_id
from bot.steps.commands import CommandStepRunner, LineSplitter
from bot.store import SqlStore
from bot.validation import ENV_NAME, check_ref, check_repo_name
from tests.support.fuzz import examples
from tests.support.postgres import PostgresServer, start_postgres, unavailable_reason
from tests.support.steputil import make_ctx

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Builders get big generated inputs (lists of deploys with megabyte fields): fewer examples each.
FUZZ_BIG = settings(FUZZ, max_examples=examples(60))
MEGABYTE = 1_000_000
KEYWORDS = {"cancel", "lock", "unlock", "where", "help", "to"}

# ---- strategies ---------------------------------------------------------------------------------

NASTY = [
    "<!channel>", "<!here>", "<!everyone>", "<@U0BOSS001>", "<#C0GENERAL|general>", "<!subteam^S01>",
    "<https://evil.test|click me>", "<mailto:a@b.c|a@b.c>", "<!date^1^{date}|x>", "&lt;!here&gt;",
    '{"type":"section","text":{"type":"mrkdwn","text":"<!here>"}}', "```", "`", "*bold*", "&", "&amp;",
    "<", ">", "|", "\n", "\r\n", "\r", "\t", "\x00", "\x1b[31m", "\x0b", "\x85", "\u2028", "\u202e",
    "\u200b", "\ud800", "\udfff", "é", "🚀", "$(id)", ";rm -rf /", "..", "-rf", "!", "@", "#", ":",
    "'", '"', "“", "{sha}", "${GITHUB_TOKEN}", " ", "to", "lock", "cancel", "acme/api", "main",
]  # fmt: skip
nasty_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=4), max_size=30).map("".join),
)
huge_text = st.tuples(st.sampled_from(NASTY), st.sampled_from(NASTY)).map(
    lambda pair: (pair[0] + "x" + pair[1]) * (MEGABYTE // (len(pair[0]) + len(pair[1]) + 1) + 1)
)
hostile = st.one_of(nasty_text, nasty_text, nasty_text, huge_text)

owners = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9._-]{1,100}", fullmatch=True).filter(lambda n: n not in (".", ".."))
full_repos = st.builds(lambda o, n: f"{o}/{n}", owners, names)
bare_repos = names.filter(lambda n: n.lower() not in KEYWORDS and not n.startswith("-"))
repos = full_repos | bare_repos
_segment = st.from_regex(r"[A-Za-z0-9_+][A-Za-z0-9_+-]{0,15}(\.[A-Za-z0-9_+-]{1,8}){0,2}", fullmatch=True)
refs = st.one_of(
    st.lists(_segment, min_size=1, max_size=4).map("/".join).filter(lambda r: not r.endswith(".lock")),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
)
envs = st.from_regex(ENV_NAME.pattern, fullmatch=True)
spaces = st.lists(st.sampled_from([" ", "  ", "\t", " \t "]), min_size=1, max_size=2).map("".join)


def check_one_line_error(exc: BaseException) -> None:
    """A user-facing error: one non-empty line, bounded, and inert once rendered for Slack."""
    message = str(exc)
    assert message and len(message.splitlines()) == 1, repr(message)
    assert len(message) <= 3000
    assert "<" not in error_text(message) and ">" not in error_text(message)


# ---- 1. the /deploy and /deploy-status text parsers ----------------------------------------------


@FUZZ
@given(st.one_of(hostile, st.text(min_size=495, max_size=505), st.text(alphabet="ab /@!:<>|&", max_size=40)))
def test_any_deploy_text_is_a_valid_command_or_a_one_line_request_error(text: str) -> None:
    try:
        command = parse_deploy(text)
    except RequestError as exc:
        check_one_line_error(exc)
        return
    # Whatever gets through names only things that passed validation.
    if isinstance(command, DeployCommand | LockCommand | UnlockCommand | WhereCommand):
        assert check_repo_name(command.repo) == command.repo
    if isinstance(command, DeployCommand) and command.ref is not None:
        assert check_ref(command.ref) == command.ref
    env = getattr(command, "env", None)
    assert env is None or ENV_NAME.fullmatch(env)
    if isinstance(command, LockCommand):
        assert "\n" not in command.reason and len(command.reason) <= 200


@FUZZ
@given(st.one_of(hostile, st.text(alphabet="ab /<>|&to", max_size=30)))
def test_any_status_text_is_a_status_command_or_a_one_line_request_error(text: str) -> None:
    try:
        command = parse_status(text)
    except RequestError as exc:
        check_one_line_error(exc)
        return
    assert command.repo is None or check_repo_name(command.repo) == command.repo
    assert command.env is None or ENV_NAME.fullmatch(command.env)


@st.composite
def typed_deploys(draw: st.DrawFn) -> tuple[str, DeployCommand]:
    """A DeployCommand and one way a user could type it (spacing, case, `!` placement, a Slack link)."""
    command = DeployCommand(draw(repos), draw(st.none() | refs), draw(st.none() | envs), draw(st.booleans()))
    target = command.repo + (f"@{command.ref}" if command.ref else "")
    if len(target) < 200 and draw(st.booleans()):
        target = f"<http://{target}|{target}>"  # Slack auto-linked something that looked like a host
    words = [target]
    if command.env:
        words += [draw(st.sampled_from(["to", "TO", "To"])), command.env]
    gap = draw(spaces)
    text = gap.join(words)
    if command.force:
        text += draw(st.sampled_from(["!", " !", "\t!"]))
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "  "])), command


@st.composite
def typed_others(draw: st.DrawFn) -> tuple[str, Any]:
    """Cancel, lock (with a reason as Slack escapes it), unlock, where and help, typed."""
    kind = draw(st.sampled_from(["cancel", "lock", "unlock", "where", "help"]))
    keyword = draw(st.sampled_from([kind, kind.upper(), kind.title()]))
    gap = draw(spaces)
    if kind == "cancel":
        number = draw(st.integers(1, 10**18 - 1))
        return f"{keyword}{gap}{draw(st.sampled_from(['', '#']))}{number}", CancelCommand(number)
    if kind == "help":
        return keyword, HelpCommand()
    repo = draw(repos)
    if kind == "where":
        return f"{keyword}{gap}{repo}", WhereCommand(repo)
    env = draw(st.none() | envs)
    text = f"{keyword}{gap}{repo}" + (f"{gap}to{gap}{env}" if env else "")
    if kind == "unlock":
        return text, UnlockCommand(repo, env)
    reason = draw(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40))
    expected = " ".join(reason.split())
    if reason or draw(st.booleans()):
        text += f"{draw(st.sampled_from([':', ' : ', ' :']))}{escape(reason)}"
    return text, LockCommand(repo, env, expected)


@FUZZ
@given(st.one_of(typed_deploys(), typed_others()))
def test_rendering_a_valid_command_as_text_and_parsing_it_gives_it_back(case: tuple[str, Any]) -> None:
    text, command = case
    assert parse_deploy(text) == command


@FUZZ
@given(st.none() | repos.filter(lambda r: r.lower() != "to"), st.none() | envs, spaces, st.booleans())
def test_status_text_round_trips(repo: str | None, env: str | None, gap: str, with_to: bool) -> None:
    env = env if repo else None
    words = [w for w in (repo, "to" if with_to and env else None, env) if w]
    assert parse_status(gap.join(words)) == StatusCommand(repo, env)


# ---- 2. refs and repo names -----------------------------------------------------------------------

FORBIDDEN_IN_BOTH = [*" \t\n\r\x00\x0b\x85\u2028;|&$`'\"<>()*?[]{}~^:\\!#%=,", "é", "🚀", "\u200b"]


@FUZZ
@given(refs, st.sampled_from([*FORBIDDEN_IN_BOTH, "..", "@{", "//", "/."]), st.data())
def test_refs_with_metacharacters_or_dot_dot_are_rejected(ref: str, bad: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(ref)))
    with pytest.raises(InvalidRef) as info:
        check_ref(ref[:at] + bad + ref[at:])
    check_one_line_error(info.value)


@FUZZ
@given(full_repos, st.sampled_from([*FORBIDDEN_IN_BOTH, "/"]), st.data())
def test_repo_names_with_metacharacters_are_rejected(repo: str, bad: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(repo)))
    with pytest.raises(InvalidRepoName) as info:
        check_repo_name(repo[:at] + bad + repo[at:])
    check_one_line_error(info.value)


@FUZZ
@given(hostile | st.text(alphabet="ab./-_+@{}~^: \n", max_size=12))
def test_whatever_passes_the_checks_is_plain_ascii_and_never_an_option(text: str) -> None:
    for check, error in ((check_ref, InvalidRef), (check_repo_name, InvalidRepoName)):
        try:
            accepted = check(text)
        except error as exc:
            check_one_line_error(exc)
            continue
        assert re.fullmatch(r"[A-Za-z0-9._/+-]{1,200}", accepted)
        assert ".." not in accepted.split("/") and "." not in accepted.split("/")
    if text.startswith("-"):
        with pytest.raises(InvalidRef):
            check_ref(text)


@FUZZ
@given(refs, full_repos)
def test_generated_refs_and_repo_names_are_accepted(ref: str, repo: str) -> None:
    assert check_ref(ref) == ref
    assert check_repo_name(repo) == repo


@pytest.mark.parametrize(
    "ref",
    ["-rf", "--upload-pack=touch /tmp/x", "..", "../../etc/passwd", "main/../x", "a\nb", "a\x0bb",
     "$(id)", "`id`", "a;b", "a|b", "a&b", "x>y", "héllo", "ma\u200bin", "main\x00", ".hidden", "x.lock",
     "a" * 201, "@{-1}", "HEAD@{1}", "/abs", "end/", "a b", "\u2028", ""],
)  # fmt: skip
def test_explicit_hostile_refs_are_rejected(ref: str) -> None:
    with pytest.raises(InvalidRef) as info:
        check_ref(ref)
    check_one_line_error(info.value)


@pytest.mark.parametrize(
    "name",
    ["-rf/api", "acme/..", "../api", "..", ".", "acme/.", "acme/api/../x", "acme/a;b", "acme/$(id)",
     "acme/a b", "acme/api\n", "acme\n/api", "ácme/api", "acme/🚀", "acme/`id`", "a" * 40 + "/api",
     "acme/" + "a" * 101, "acme//api", "acme/a\x00", "acme/a|b", ""],
)  # fmt: skip
def test_explicit_hostile_repo_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRepoName) as info:
        check_repo_name(name)
    check_one_line_error(info.value)


def test_a_leading_dash_never_reaches_a_deploy_as_a_repo_or_ref() -> None:
    with pytest.raises(RequestError, match="no options"):
        parse_deploy("-rf")
    with pytest.raises(InvalidRef):
        parse_deploy("acme/api@--upload-pack=x")


# ---- 3. robot.yaml, fuzzed --------------------------------------------------------------------------

ENVIRON = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "GITHUB_TOKEN": "ghp_1", "X": "x"}
EXAMPLE_TEXT = (ROOT / "robot.yaml.example").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)


def _keys_of(node: Any) -> set[str]:
    """Every mapping key in a parsed YAML document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys_of(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys_of(v)}
    return set()


keys = st.sampled_from(sorted(_keys_of(EXAMPLE) | {"path", "secrets", "ping_interval"})) | st.text(
    max_size=12
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers() | st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["${X}", "${UNSET}", "${}", "${a b}", "${X", "$${X}", "$X", "${${X}}", "${\n}", "$"]),
    # PyYAML's emitter is slow on megabyte scalars; the megabyte case is an explicit test below.
    st.just("y" * 5000),
)
values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4), max_leaves=25
)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


def check_loads_or_config_error(path: Path, data: bytes) -> Settings | None:
    """load_settings gives Settings or one ConfigError line naming the file; nothing else escapes."""
    path.write_bytes(data)
    try:
        return load_settings(path, ENVIRON)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        # One line per problem (all of them at once, up to MAX_PROBLEMS), each bounded: whatever
        # newlines or sizes the file's keys and values hold, they cannot add lines of their own.
        first, *more = message.split("\n")
        assert not more or (first.endswith(" problems:") and len(more) <= MAX_PROBLEMS + 1), message
        assert all(line.startswith("  ") for line in more), message
        assert all(len(line) <= 1000 for line in [first, *more]) and "Traceback" not in message
        return None


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_generated_yaml_documents_load_or_fail_with_one_line(config_dir: Path, doc: dict[str, Any]) -> None:
    check_loads_or_config_error(config_dir / "robot.yaml", yaml.safe_dump(doc, allow_unicode=True).encode())


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """The example config with one value somewhere dropped, replaced, or buried deep."""
    node: Any = doc
    parent: Any = None
    key: Any = None
    while isinstance(node, dict | list) and node and data.draw(st.integers(0, 3)) > 0:
        choices = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, data.draw(st.sampled_from(choices))
        node = node[key]
    if parent is None:
        return data.draw(values)
    action = data.draw(st.sampled_from(["drop", "replace", "bury", "stringify"]))
    if action == "drop":
        del parent[key]
    elif action == "replace":
        parent[key] = data.draw(values)
    elif action == "bury":
        for _ in range(data.draw(st.integers(1, 60))):
            node = [node] if data.draw(st.booleans()) else {"k": node}
        parent[key] = node
    else:
        parent[key] = json.dumps(node)
    return doc


@FUZZ
@given(st.data())
def test_mutated_example_configs_load_or_fail_with_one_line(config_dir: Path, data: st.DataObject) -> None:
    doc = json.loads(json.dumps(EXAMPLE))
    for _ in range(data.draw(st.integers(1, 3))):
        doc = _mutate(doc, data)
    check_loads_or_config_error(config_dir / "robot.yaml", yaml.safe_dump(doc, allow_unicode=True).encode())


@FUZZ
@given(st.data())
def test_text_edits_of_the_example_load_or_fail_with_one_line(config_dir: Path, data: st.DataObject) -> None:
    lines = EXAMPLE_TEXT.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(lines) - 1))
        edit = data.draw(st.sampled_from(["delete", "duplicate", "insert", "indent"]))
        if edit == "delete":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "insert":
            lines.insert(at, data.draw(st.sampled_from(NASTY) | st.text(max_size=20)) + "\n")
        else:
            lines[at] = data.draw(st.sampled_from([" ", "\t", "  - ", "? "])) + lines[at]
    check_loads_or_config_error(config_dir / "robot.yaml", "".join(lines).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_as_robot_yaml_fail_with_one_line(config_dir: Path, data: bytes) -> None:
    check_loads_or_config_error(config_dir / "robot.yaml", data)


def _laughs(levels: int) -> bytes:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"github: {token: caf\xe9}\n", "not UTF-8 text"),
        (b"x: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"x: " + b"{a: " * 3000 + b"1" + b"}" * 3000, "nested too deeply"),
        (b"github: &a [*a]\n", "nested deeper than 32 levels"),
        (b"a: &a {b: *a}\ngithub: {token: x}\n", "nested deeper than 32 levels"),
        (_laughs(9), "more than 100000 values"),
        (b'github: {token: x, "to\\nken": 1}\n', "github.to ken: unknown key"),
        (b'github: {"${a\\nb}": "${a\\nb}"}\n', "is not a variable name"),
        (b'github: {token: x, timeout: "' + b"9" * MEGABYTE + b'"}\n', "github.timeout"),
        (b'github: {token: x}\nrepos: {acme/api: {environments: {"a\\nb": {}}}}', "environments.a b"),
        (b"? [a]\n: b\n", "unhashable"),
        (b"\xef\xbb\xbf\x00", "not valid YAML"),
        (b"github: !!python/object:os.system x\n", "not valid YAML"),
    ],
)
def test_explicit_hostile_configs_fail_with_one_line(config_dir: Path, data: bytes, expected: str) -> None:
    path = config_dir / "hostile.yaml"
    assert check_loads_or_config_error(path, data) is None
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings(path, ENVIRON)


def test_the_example_itself_loads(config_dir: Path) -> None:
    loaded = check_loads_or_config_error(config_dir / "robot.yaml", EXAMPLE_TEXT.encode())
    # The mutation tests start from it, so it must be valid to begin with.
    assert loaded is not None and "acme/api" in loaded.repos


# ---- 4. Block Kit builders under hostile content ---------------------------------------------------

USERS = st.sampled_from(["U0ALICE01", "W0BOB0001"]) | hostile
COMMIT_URLS = st.just("https://github.test/acme/api/commit/abc") | hostile
times = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def deploys_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Deploy]:
    """Deploys whose every free-text field comes from ``text``."""
    return st.builds(
        Deploy,
        id=st.integers(1, 10**12),
        repo=text,
        env=text,
        ref=text,
        sha=st.from_regex(r"[0-9a-f]{40}", fullmatch=True) | text,
        requested_by=st.sampled_from(["U0ALICE01", "W0BOB0001"]) | text,
        source=st.sampled_from(Source),
        state=st.sampled_from(DeployState),
        force=st.booleans(),
        created_at=times,
        started_at=times,
        finished_at=times,
        error=st.none() | text,
        cancel_requested=st.booleans(),
    )


# In long lists a megabyte per field would cost seconds per example; one huge item is enough.
some_deploys = st.tuples(st.lists(deploys_of(nasty_text), max_size=30), deploys_of(hostile)).map(
    lambda pair: [*pair[0], pair[1]]
)
locks = st.builds(
    Lock, repo=hostile, env=nasty_text, locked_by=USERS, reason=hostile, locked_at=times.filter(bool)
)
_QUOTE = r"^> "  # a mrkdwn block quote (the root message's error line)
_DATE = r"<!date\^-?\d+\^\{date_short_pretty\} \{time\}\|[^<>]*>"


def check_message(message: Message, users: set[str], url: str) -> None:
    """Slack's limits hold, and the only markup is the builders' own: known mentions, dates, the link."""
    fallback, blocks = message
    assert len(fallback) < 4000 and len(blocks) <= 50
    json.dumps(blocks)  # what slack_sdk sends must serialize, whatever the content
    texts = [fallback]
    for block in blocks:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
        elif block["type"] == "context":
            assert len(block["elements"]) <= 10
            texts += [element["text"] for element in block["elements"]]
        else:
            assert block["type"] == "actions" and 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert len(button["value"]) <= 2000 and len(button["text"]["text"]) <= 75
                assert len(button["action_id"]) <= 255
    mentions = "|".join(re.escape(f"<@{u}>") for u in sorted(users) if is_user_id(u))
    # _link makes a link only of a short URL; a megabyte one would only slow the regex down.
    link = re.escape(f"<{escape(url)}|") + r"[^<>]*>" if len(url) < 1000 else ""
    own = re.compile("|".join(filter(None, [mentions, _DATE, link, _QUOTE])), re.MULTILINE)
    for text in texts:
        assert 0 < len(text) <= 3000
        bare = own.sub("", text)
        assert "<" not in bare and ">" not in bare, bare[:300]


@FUZZ_BIG
@given(deploys_of(hostile), COMMIT_URLS, st.none() | st.floats(0, 10**7))
def test_root_message_under_hostile_content(deploy: Deploy, url: str, duration: float | None) -> None:
    check_message(root_message(deploy, url, duration), {deploy.requested_by}, url)


@FUZZ_BIG
@given(
    st.lists(
        st.builds(StepView, st.integers(1, 10**6), hostile, st.sampled_from(StepState), hostile), max_size=60
    ),
    st.none() | hostile,
    st.floats(0, 10**7),
    st.none() | st.lists(hostile, max_size=50),
)
def test_progress_message_under_hostile_content(
    steps: list[StepView], task: str | None, elapsed: float, tail: list[str] | None
) -> None:
    check_message(progress_message(steps, task, elapsed, tail), set(), "-")


@FUZZ_BIG
@given(
    st.tuples(hostile, full_repos),
    st.lists(
        st.builds(MergedPull, st.integers(0, 10**9), hostile, hostile, st.none() | hostile), max_size=15
    ),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True) | hostile,
    hostile,
    hostile,
    st.lists(envs | nasty_text, max_size=60),
    COMMIT_URLS,
    st.lists(hostile, max_size=5),
)
def test_merge_announcement_under_hostile_content(
    repo: tuple[str, str],
    pulls: list[MergedPull],
    sha: str,
    branch: str,
    ci: str,
    environments: list[str],
    url: str,
    notes: list[str],
) -> None:
    for name in repo:
        check_message(merge_announcement(name, pulls, sha, branch, ci, environments, url, notes), set(), url)


@FUZZ_BIG
@given(
    some_deploys,
    some_deploys,
    st.lists(locks, max_size=10),
    st.dictionaries(st.integers(1, 10**12), hostile, max_size=5),
)
def test_status_and_where_under_hostile_content(
    some: list[Deploy], others: list[Deploy], held: list[Lock], steps: dict[int, str]
) -> None:
    users = {d.requested_by for d in some + others} | {lock.locked_by for lock in held}
    check_message(status_blocks(some, others, some + others, held, steps), users, "-")
    views = [
        EnvironmentView(d.repo, d.env, i == 0, held[i] if i < len(held) else None, d if i % 2 else None)
        for i, d in enumerate(some)
    ]
    check_message(where_blocks(views), users, "-")


@FUZZ
@given(hostile)
def test_error_replies_are_one_bounded_inert_line(message: str) -> None:
    reply = error_text(message)
    assert len(reply) <= 3000 and len(reply.splitlines()) == 1
    assert "<" not in reply and ">" not in reply


# ---- 5. build output: 1 MB lines, invalid UTF-8, NUL bytes, progress bars ---------------------------

short_lines = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
long_lines = st.tuples(st.binary(min_size=1, max_size=8), st.integers(2 * MAX_LINE, 3 * MAX_LINE)).map(
    lambda pair: (pair[0].replace(b"\n", b"") or b"\xc3\xa9") * (pair[1] // max(1, len(pair[0]))) + b"!"
)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(short_lines | long_lines, min_size=1, max_size=6), st.booleans(), st.data())
def test_line_splitter_over_any_chunking(
    lines: list[bytes], newline_at_end: bool, data: st.DataObject
) -> None:
    raw = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    out: list[str] = []
    splitter = LineSplitter(out.append, deque(maxlen=40))
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        splitter.feed(raw[start:end])
    splitter.close()
    expected = lines if newline_at_end or lines[-1] else lines[:-1]
    assert len(out) == len(expected)
    for got, line in zip(out, expected, strict=True):
        full = line.decode("utf-8", "replace")
        if len(line) <= 300:
            assert got == full
        else:
            # At most MAX_LINE raw bytes are kept, so at most that many characters (a forced cut may
            # end in one U+FFFD where it split a character).
            assert got.endswith(CUT_MARK)
            kept = got.removesuffix(CUT_MARK)
            assert MAX_LINE // 4 - 1 <= len(kept) <= MAX_LINE
            assert full.startswith(kept.removesuffix("\ufffd"))


HOSTILE_OUTPUT = r"""
import sys
out = sys.stdout.buffer
out.write(b"start\n")
out.write(b"<!channel> " + b"x" * 1_000_000 + b" END\n")
out.write(b"bad \xff\xfe \xc3( utf8\n")
out.write(b"nul\x00byte\n")
out.write(b"progress 10%\rprogress 50%\rprogress 100%\n")
out.write(b'{"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<!here>"}}]}\n')
out.write(b"\xe9" * 2_000_000)
out.flush()
sys.exit(3)
"""


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer | None]:
    """A real PostgreSQL when this machine has one (NUL bytes are what it refuses), else None."""
    if unavailable_reason() is not None:
        yield None
        return
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow  # a real step process, and PostgreSQL when there is one
def test_a_step_printing_hostile_output_is_delivered_cut_and_stored(
    tmp_path: Path, pg_server: PostgresServer | None
) -> None:
    ctx, recorder = make_ctx(tmp_path)
    result = CommandStepRunner().run(CommandStep((sys.executable, "-c", HOSTILE_OUTPUT)), ctx)

    assert (result.status, result.reason) == (StepStatus.FAILED, "exited 3")
    start, huge, bad, nul, progress, blocks, latin = recorder.lines
    assert start == "start"
    assert huge.startswith("<!channel> xxx") and huge.endswith(CUT_MARK)
    assert len(huge.encode()) <= MAX_LINE + len(CUT_MARK.encode())
    assert bad == "bad \ufffd\ufffd \ufffd( utf8"
    assert nul == "nul\x00byte"
    assert progress == "progress 10%\rprogress 50%\rprogress 100%"
    assert blocks.startswith('{"blocks"')
    assert latin.startswith("\ufffd\ufffd") and latin.endswith(CUT_MARK)
    assert result.tail == tuple(recorder.lines)

    failed = [StepView(1, "python -c …", StepState.FAILED, result.reason)]
    for tail in (result.tail, result.tail[:-1], result.tail[:2]):
        check_message(progress_message(failed, None, 1.0, tail), set(), "-")
    shown = json.dumps(progress_message(failed, None, 1.0, result.tail[:-1]))
    assert "&lt;!here&gt;" in shown and "nul\\u0000byte" in shown
    # A huge last line keeps its end (where errors are), so the cut mark shows.
    assert (
        "x …[line cut at 64 KiB]\n```"
        in progress_message(failed, None, 1.0, result.tail[:2])[1][-1]["text"]["text"]
    )

    urls = [f"sqlite:///{tmp_path / 'robot.db'}"] + ([pg_server.new_database()] if pg_server else [])
    for url in urls:
        store = SqlStore.from_url(url)
        try:
            deploy, _ = store.create_deploy(
                DeployRequest("acme/api", "production", "main", "a" * 40, "U0ALICE01", Source.COMMAND)
            )
            store.append_log(deploy.id, recorder.lines)
            assert store.read_log(deploy.id).split("\n")[3] == "nul\ufffdbyte"
        finally:
            store.close()
