"""Benchmarks: scripts that measure and print; nothing here asserts (tests do that)."""
