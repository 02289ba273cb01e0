"""What `robot check --online` asks GitHub: may the token deploy to a repo, and whom it acts as."""

from __future__ import annotations

from github.GithubException import GithubException

from bot.errors import GitHubError
from bot.github.client import GitHubClient


class AccessChecks(GitHubClient):
    """The token's reach: write access per repo, identity and the hourly limit left."""

    def check_access(self, repo: str) -> str:
        """One line on what the token may do in ``repo``; raises when it cannot deploy there."""
        handle = self._repo(repo)
        with self._guard("read permissions", repo):
            perms = handle.permissions
        if perms is None:
            return f"{repo}: readable (GitHub did not say whether the token may deploy)"
        if perms.push or perms.maintain or perms.admin:
            return f"{repo}: readable; the token can create deployments (write access)"
        raise GitHubError(
            f"{repo}: readable, but the token has no write access, so it cannot create deployments"
        )

    def check_token(self) -> str:
        """One line on whom the token acts as and how much of the hourly limit is left."""
        with self._guard("check token", "the API"):
            try:
                login = self._gh.get_user().login
            except GithubException as exc:
                if exc.status != 403:
                    raise
                login = "a GitHub App installation"
            remaining, limit = self._gh.rate_limiting
        return f"token accepted: acting as {login}; {remaining}/{limit} requests left this hour"
