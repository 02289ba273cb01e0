"""`robot run`'s log: text lines or one JSON object per line, with every secret redacted in both."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.config import LoggingSettings
from bot.models import Deploy

# Fields a log call may pass with `extra=` (see deploy_fields); JSON lines carry them when set.
DEPLOY_FIELDS = ("deploy_id", "repo", "environment")
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def deploy_fields(deploy: Deploy) -> dict[str, Any]:
    """The ``extra=`` that ties a log line to its deploy."""
    return {"deploy_id": deploy.id, "repo": deploy.repo, "environment": deploy.env}


class RedactingFilter(logging.Filter):
    """Masks secrets in the message, its traceback and the deploy fields, before any formatter runs."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            # The traceback is part of what gets written, so it is redacted too.
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self._redact(text)
        record.args = None
        for name in DEPLOY_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self._redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 UTC), level, logger, message, deploy fields if known."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:  # a record that did not pass the redacting filter
            entry["message"] += "\n" + self.formatException(record.exc_info)
        for name in DEPLOY_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    settings: LoggingSettings, redact: Callable[[str], str], root: logging.Logger | None = None
) -> None:
    """Set ``root``'s level and format from robot.yaml's `logging:`; nothing it writes carries a secret."""
    root = root or logging.getLogger()
    root.setLevel(settings.level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RedactingFilter(redact))
