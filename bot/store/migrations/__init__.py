"""Alembic's script directory for the store: env.py and one file per schema revision."""
