"""Where a human approves: pull-request links for GitHub and GitLab remotes, and `gh`."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import quote

_URL_RE = re.compile(
    r"^(?:(?:https?|ssh|git)://(?:[^@/]+@)?(?P<host1>[^/:]+)(?::\d+)?/|"
    r"(?:[^@/]+@)?(?P<host2>[^/:]+):)(?P<path>[^ ]+?)(?:\.git)?/?$"
)


def web_repo(url: str | None) -> tuple[str, str] | None:
    """('github.com', 'owner/repo') for a remote URL, or None for local paths."""
    if not url:
        return None
    m = _URL_RE.match(url.strip())
    if not m:
        return None
    host = m.group("host1") or m.group("host2")
    return host, m.group("path").strip("/")


def pull_request(url: str | None, base: str, head: str) -> str | None:
    """The page where a pull (merge) request from `head` into `base` is opened."""
    repo = web_repo(url)
    if repo is None:
        return None
    host, path = repo
    if "github" in host:
        return f"https://{host}/{path}/compare/{quote(base)}...{quote(head)}?expand=1"
    if "gitlab" in host:
        return (
            f"https://{host}/{path}/-/merge_requests/new?"
            f"merge_request%5Bsource_branch%5D={quote(head, safe='')}"
            f"&merge_request%5Btarget_branch%5D={quote(base, safe='')}"
        )
    if "gitea" in host or "codeberg" in host:
        return f"https://{host}/{path}/compare/{quote(base)}...{quote(head)}"
    return None


def gh_pr_create(base: str, head: str, title: str, body: str) -> tuple[str | None, str | None]:
    """Open the pull request with the GitHub CLI: (its URL, None), or (None, why not) —
    `gh` is not installed, or it failed (its own words)."""
    gh = shutil.which("gh")
    if gh is None:
        return None, "`gh` (the GitHub CLI) is not installed"
    try:
        proc = subprocess.run(
            [
                gh,
                "pr",
                "create",
                "--base",
                base,
                "--head",
                head,
                "--title",
                f"Approve: {title}",
                "--body",
                body or f"Merging this pull request approves: {title}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        return None, f"`gh` could not run: {exc}"
    url = proc.stdout.strip()
    if proc.returncode == 0 and url:
        return url, None
    said = " ".join(proc.stderr.split())[:300] or f"exit {proc.returncode}"
    return None, f"`gh pr create` failed: {said}"
