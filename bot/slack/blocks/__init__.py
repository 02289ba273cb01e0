"""Block Kit builders, one module per consumer: pure functions from bot.models values to messages."""
