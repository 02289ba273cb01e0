"""The plain-text helpers every front end shares."""

from __future__ import annotations

from bot.text import cut_description, one_line, shown, terminal_safe


def test_one_line_folds_every_line_break_and_cuts_with_an_ellipsis() -> None:
    assert one_line("a\nb\r\nc\u2028d\x85e   f") == "a b c d e f"
    assert one_line("abcdefghij", 5) == "abcd…"
    assert one_line("short", 5) == "short"


def test_shown_quotes_user_input_without_its_backticks() -> None:
    assert shown("`rm -rf`\n/") == "'rm -rf' /"
    assert len(shown("x" * 500)) == 80


def test_descriptions_fit_githubs_140_characters() -> None:
    assert len(cut_description("d" * 300)) == 140 and cut_description("ok") == "ok"


def test_terminal_safe_removes_whole_escape_sequences_and_controls() -> None:
    text = "a\x1b[31mred\x1b[0m b\x9b1mX \u202eevil\x07 \ttab\x1b]0;title\x07 end\x00\x7f\x85"
    assert terminal_safe(text) == "ared bX evil \ttab end"
    assert terminal_safe("plain\ttext\nlines") == "plain\ttext\nlines"
