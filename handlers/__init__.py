"""Bolt listeners: parse a Slack payload, call one service, render, reply."""
