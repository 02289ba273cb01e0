"""Fakes of what the robot talks to: loopback servers (Slack, GitHub) and in-memory ports."""
