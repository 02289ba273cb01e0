"""Helpers shared by tests and benches: builders, the one robot rig, waiting, PostgreSQL."""
