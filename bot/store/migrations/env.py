"""Alembic's environment: migrations run on the connection and transaction the store hands over."""

from alembic import context

from bot.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    # The store takes the schema lock on its own connection first; a migration run anywhere
    # else could race a robot that is starting.
    raise RuntimeError("run migrations with `robot db upgrade`, not the alembic command")

# Batch mode: SQLite can only ALTER a table by copying it, which batch_alter_table does.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
