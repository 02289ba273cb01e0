"""What `robot check --online` asks GitHub: may the robot deploy to a repo, and whom it acts as."""

from __future__ import annotations

from github.GithubException import GithubException

from bot.errors import BotError, GitHubError
from bot.github.client import GitHubClient, _github_reason

# What a GitHub App needs on each repo: gate on CI, create deployments, announce merges.
APP_PERMISSIONS = {
    "deployments": "write",
    "contents": "read",
    "statuses": "read",
    "checks": "read",
    "pull_requests": "read",
    "metadata": "read",
}
_LEVELS = {"read": 1, "write": 2, "admin": 3}


class AccessChecks(GitHubClient):
    """The robot's reach: write access per repo, the token or App it acts as, its installations."""

    def check_access(self, repo: str) -> str:
        """One line on what the robot may do in ``repo``; raises when it cannot deploy there."""
        handle = self._repo(repo)
        if self.is_app:
            return self._check_app_access(repo)
        with self._guard("read permissions", repo):
            perms = handle.permissions
        if perms is None:
            return f"{repo}: readable (GitHub did not say whether the token may deploy)"
        if perms.push or perms.maintain or perms.admin:
            return f"{repo}: readable; the token can create deployments (write access)"
        raise GitHubError(
            f"{repo}: readable, but the token has no write access, so it cannot create deployments"
        )

    def _check_app_access(self, repo: str) -> str:
        """A GitHub App's reach is its installation's permissions, the same on each repo it serves."""
        installation = self._installation(repo)
        granted = installation.permissions
        missing = [
            f"{name}: {level}"
            for name, level in APP_PERMISSIONS.items()
            if _LEVELS.get(granted.get(name, ""), 0) < _LEVELS[level]
        ]
        where = f"installation {installation.id} on {installation.account}"
        if missing:
            raise GitHubError(
                f"{repo}: readable through {where}, but the GitHub App lacks {', '.join(missing)} "
                "(grant them in the App's permissions, then accept them on the installation)"
            )
        return f"{repo}: readable through {where}; the App can create deployments"

    def check_token(self) -> str:
        """One line on whom the token acts as and how much of the hourly limit is left."""
        if self._token_clients is None:
            raise GitHubError("The robot acts as a GitHub App, not with a token: see check_app")
        gh = self._token_clients[0]
        with self._guard("check token", "the API"):
            try:
                login = gh.get_user().login
            except GithubException as exc:
                if exc.status != 403:
                    raise
                login = "a GitHub App installation"
            remaining, limit = gh.rate_limiting
        return f"token accepted: acting as {login}; {remaining}/{limit} requests left this hour"

    def check_app(self) -> str:
        """One line naming the GitHub App the robot acts as (GET /app, signed with its key)."""
        if self._integration is None or self._app is None:
            raise GitHubError("The robot acts with a token, not as a GitHub App")
        integration, app_id = self._integration, self._app.app_id

        def refused(exc: GithubException) -> BotError:
            return GitHubError(
                f"GitHub refused the App's credentials (401 {_github_reason(exc)}): "
                f"check github.app_id ({app_id}) and github.private_key"
            )

        with self._guard("read the GitHub App", "the API", {401: refused}):
            found = integration.get_app()
            return f"{found.name} ({found.slug}), app id {found.id}"

    def installations(self) -> list[tuple[int, str]]:
        """Each installation used so far with one line on it: its account and the repos it serves."""
        with self._lock:
            owners = dict(self._owners)
            found = sorted(self._installations.values(), key=lambda i: i.id)
        served = {i.id: sorted(o for o, ident in owners.items() if ident == i.id) for i in found}
        return [
            (i.id, f"on {i.account}, serving the repos of {', '.join(served[i.id]) or 'no owner yet'}")
            for i in found
        ]
