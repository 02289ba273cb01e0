"""Approvals for protected environments: who may approve a deploy, and what its root shows of them."""

from __future__ import annotations

from bot.config import Settings
from bot.config.schema import ApprovalSettings
from bot.models import ApprovalView, Deploy
from bot.ports import StorePort


def approval_settings(settings: Settings, repo: str, env: str) -> ApprovalSettings | None:
    """The environment's `approvals:`; None when it wants none (or is no longer configured)."""
    repo_settings = settings.repos.get(repo)
    environment = repo_settings.environments.get(env) if repo_settings else None
    return environment.approvals if environment else None


def approvers_of(settings: Settings, repo: str, env: str) -> list[str]:
    """Who may approve there: `approvers`, else the repo's deployers (both empty: anyone)."""
    approvals = approval_settings(settings, repo, env)
    if approvals is None:
        return []
    return list(approvals.approvers) or list(settings.repos[repo].deployers)


def approval_view(settings: Settings, store: StorePort, deploy: Deploy) -> ApprovalView | None:
    """What the deploy's root shows of approvals; None where its environment wants none.

    A forced deploy (break glass) skipped them: the view says so and lists no approvers.
    """
    approvals = approval_settings(settings, deploy.repo, deploy.env)
    if approvals is None:
        return None
    if deploy.force:
        return ApprovalView(approvals.required, (), (), break_glass=True)
    given = store.list_approvals([deploy.id]).get(deploy.id, ())
    approvers = tuple(approvers_of(settings, deploy.repo, deploy.env))
    return ApprovalView(approvals.required, approvers, given)
