"""Storage and checks of the test Hub (``tests/hub_server.py``): repos, commits, trees, card YAML.

Plain Python, no web framework: a repo is a set of branches pointing at commits, and a
commit is a full snapshot ``{path: bytes}``. Errors are ``HubError`` carrying the HTTP
status and the ``X-Error-Code`` the real Hub would send.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
SPACE_SDKS = {"gradio", "streamlit", "docker", "static"}
_COUNTER = itertools.count(1)


class HubError(Exception):
    """An error answer: HTTP status, message and the Hub's ``X-Error-Code`` (if any)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_oid(data: bytes) -> str:
    """Git blob id of ``data`` (what the Hub reports as a regular file's oid and etag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    """One commit: a full snapshot of the repo's files."""

    sha: str
    files: dict[str, bytes]
    summary: str
    parent: str | None = None


@dataclass
class Repo:
    """An in-memory repo: branches point at commits. Created with one commit (``.gitattributes``), like the Hub."""

    repo_id: str
    repo_type: str
    private: bool = False
    sdk: str | None = None
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.branches:
            self.branches["main"] = self.new_commit({".gitattributes": GITATTRIBUTES}, "initial commit", None).sha

    def head(self, revision: str) -> Commit | None:
        """Commit of a branch name or a commit sha (``None`` if neither)."""
        return self.commits.get(self.branches.get(revision, revision))

    def files(self, revision: str = "main") -> dict[str, bytes]:
        """The files at ``revision`` (empty if unknown)."""
        commit = self.head(revision)
        return dict(commit.files) if commit else {}

    def new_commit(self, files: dict[str, bytes], summary: str, parent: str | None) -> Commit:
        """Stores a commit (not attached to any branch)."""
        seed = f"{self.repo_id}\n{parent}\n{summary}\n{next(_COUNTER)}\n" + "".join(
            f"{p}:{git_oid(d)}\n" for p, d in sorted(files.items()))
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), files, summary, parent)
        self.commits[commit.sha] = commit
        return commit

    def create_branch(self, branch: str, starting_point: str | None) -> None:
        """``POST .../branch/{branch}``: 409 if it exists, 404 if the starting point does not."""
        if branch in self.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = self.head(starting_point or "main")
        if start is None:
            raise HubError(404, "Invalid rev id", "RevisionNotFound")
        self.branches[branch] = start.sha

    def apply_commit(self, revision: str, lines: list[dict[str, Any]], *, create_pr: bool) -> tuple[Commit, str]:
        """Applies the NDJSON lines of ``POST .../commit/{revision}``; returns the commit and the branch moved.

        Like the Hub, a commit never creates a branch: an unknown ``revision`` is a 404.
        """
        if revision not in self.branches:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = self.commits[self.branches[revision]]
        header = next((x["value"] for x in lines if x.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            raise HubError(400, "the commit needs a header line with a summary")
        if header.get("parentCommit") and not head.sha.startswith(header["parentCommit"]):
            raise HubError(412, f"A commit has happened since. Parent commit is {head.sha}")
        files = dict(head.files)
        for item in lines:
            key, value = item.get("key"), item.get("value", {})
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "only base64 file content is supported")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            elif key == "lfsFile":
                raise HubError(400, "LFS uploads are not supported by this test server (preupload says 'regular')")
            elif key != "header":
                raise HubError(400, f"unknown commit line {key!r}")
        target = revision
        if create_pr:
            target = f"refs/pr/{sum(b.startswith('refs/pr/') for b in self.branches) + 1}"
        commit = self.new_commit(files, header["summary"], head.sha)
        self.branches[target] = commit.sha
        return commit, target

    def tree(self, revision: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        """``GET .../tree/{revision}/{path}`` entries (files and folders)."""
        commit = self.head(revision)
        if commit is None:
            raise HubError(404, "Invalid rev id", "RevisionNotFound")
        prefix = f"{path}/" if path else ""
        entries: dict[str, dict[str, Any]] = {}
        for p, data in sorted(commit.files.items()):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                if recursive or depth == 1:
                    folder = prefix + "/".join(parts[:depth])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "oid": git_oid(folder.encode()),
                                                "size": 0})
            if recursive or len(parts) == 1:
                entries[p] = {"type": "file", "path": p, "size": len(data), "oid": git_oid(data)}
        return list(entries.values())


def validate_card_yaml(content: str, repo_type: str) -> tuple[list[str], list[str]]:
    """The checks of the Hub's ``/api/validate-yaml`` that matter here.

    Returns:
        ``(errors, warnings)`` as human-readable messages.
    """
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    if not match:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return [f"invalid YAML: {err}"], []
    if meta is None:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"], []
    errors = []
    for key in ("tags", "datasets", "base_model", "license", "language"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) or (isinstance(value, list)
                                                                 and all(isinstance(v, str) for v in value))):
            errors.append(f'"{key}" must be a string or a list of strings')
    if repo_type == "space" and meta.get("sdk") is not None and meta["sdk"] not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of {sorted(SPACE_SDKS)}')
    if "model-index" in meta:
        from huggingface_hub.repocard_data import model_index_to_eval_results

        try:
            _, results = model_index_to_eval_results(meta["model-index"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            errors.append(f'"model-index" is malformed: {type(err).__name__}: {err}')
        else:
            errors += [f'"model-index": metric {r.metric_type!r} value must be a number' for r in results
                       if not isinstance(r.metric_value, (int, float)) or isinstance(r.metric_value, bool)]
    return errors, []
