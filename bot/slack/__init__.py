"""Slack-facing pure parts: the slash command grammar, Block Kit builders and mrkdwn text helpers."""
