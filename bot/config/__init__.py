"""robot.yaml → validated, frozen settings (DESIGN §5): the models and their loader."""

from bot.config.loader import MAX_DEPTH, MAX_VALUES, SECRET_NAME, load_settings
from bot.config.schema import (
    AnsibleSettings,
    ApprovalSettings,
    DeploySettings,
    EnvironmentSettings,
    GitHubSettings,
    LoggingSettings,
    MetricsSettings,
    RepoSettings,
    Settings,
    SlackSettings,
    StateSettings,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "SECRET_NAME",
    "AnsibleSettings",
    "ApprovalSettings",
    "DeploySettings",
    "EnvironmentSettings",
    "GitHubSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RepoSettings",
    "Settings",
    "SlackSettings",
    "StateSettings",
    "load_settings",
]
