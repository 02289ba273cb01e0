"""The only place that talks to GitHub: PyGithub with bounded retries and human error messages.

``client`` builds the PyGithub clients and words every failure; ``deployments``, ``merges`` and
``access`` are the call groups, joined here into the one gateway the composition root builds.
"""

from __future__ import annotations

from bot.github.access import AccessChecks
from bot.github.deployments import DeploymentCalls
from bot.github.merges import MergeReads

__all__ = ["GitHubGateway"]


class GitHubGateway(DeploymentCalls, MergeReads, AccessChecks):
    """GitHubPort on real PyGithub: retries 5xx, timeouts and rate limits; raises only BotError.

    Beyond the port it serves the poller (head polls, compare, pull requests) and `robot check`.
    """
