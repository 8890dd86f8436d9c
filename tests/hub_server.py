"""A Hugging Face Hub-compatible test server: FastAPI + uvicorn on 127.0.0.1, in memory.

It speaks the subset of the Hub API that ``huggingface_hub`` 2.4 uses (with
``HF_HUB_DISABLE_XET=1``) to create repos and branches, commit files and download them:

    POST /api/repos/create                                  {"url"}; 409 + {"url"} when it exists
    POST /api/validate-yaml                                 front matter + model-index checks
    POST /api/{type}s/{org}/{name}/preupload/{rev}          every file "regular", with its remote oid
    POST /api/{type}s/{org}/{name}/commit/{rev}             NDJSON: header, file, deletedFile, deletedFolder
    POST /api/{type}s/{org}/{name}/branch/{branch}          like the Hub: commits never create branches
    GET  /api/{type}s/{org}/{name}[/revision/{rev}]         sha, siblings
    GET  /api/{type}s/{org}/{name}/tree/{rev}[/{path}]      (snapshot_download lists the tree)
    GET  /api/{type}s/{org}/{name}/refs                     branches
    HEAD/GET /[{type}s/]{org}/{name}/resolve/{rev}/{path}   X-Repo-Commit, ETag, Content-Length
    GET  /api/whoami-v2

Writes need ``Authorization: Bearer <token>``; every request's headers are recorded in
``HubServer.requests`` so tests can check how the token travelled. Because
``huggingface_hub`` reads ``HF_ENDPOINT`` when imported, client code runs in a
subprocess (``HubServer.run_python``) with an environment that points at this server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.hub_repo import SPACE_SDKS, HubError, Repo, git_oid, validate_card_yaml

__all__ = ["HubServer", "Repo", "validate_card_yaml"]

REPO_ROOT = Path(__file__).resolve().parents[1]
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass
class RecordedRequest:
    """What the server saw of one request (no bodies: they can be large)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    """A Hub-style error answer (``X-Error-Code`` is what ``huggingface_hub`` maps to exceptions)."""
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class HubServer:
    """The server, its storage and a client runner. Use as a context manager.

    Args:
        token: The only token accepted for writes (and for reading private repos).
        home: Default ``HF_HOME`` for client subprocesses (a temporary folder).

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``.
        repos: ``{"org/name": Repo}`` for models, ``{"spaces/org/name": Repo}`` etc. otherwise.
        requests: Every request received, in order.
        failures: ``[(method, path_regex, status)]`` to answer with an error (see ``fail``).
    """

    def __init__(self, *, token: str = "hf_test_token_never_on_disk", home: Path | None = None) -> None:
        self.token = token
        self.home = home
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.failures: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> HubServer:
        """Binds 127.0.0.1 on a free port and serves in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test Hub server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stops serving and joins the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers
    def fail(self, path_regex: str, status: int = 500, method: str = "POST") -> None:
        """Answers requests whose path matches ``path_regex`` with ``status`` from now on."""
        self.failures.append((method.upper(), path_regex, status))

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repo (``KeyError`` if it does not exist)."""
        return self.repos[URL_PREFIX[repo_type] + repo_id]

    def client_env(self, home: Path | None = None, *, token: str | None = None,
                   endpoint: str | None = None) -> dict[str, str]:
        """Environment for a ``huggingface_hub`` client that talks to this server only.

        Args:
            home: ``HF_HOME`` (cache, stored token); defaults to ``self.home``.
            token: ``HF_TOKEN``; defaults to the server's token; ``""`` sends none.
            endpoint: Override ``HF_ENDPOINT`` (e.g. an unreachable port).
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        home = home or self.home
        assert home is not None, "client_env needs an HF_HOME folder"
        env.update(HF_ENDPOINT=endpoint or self.endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                   HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   HF_HUB_DISABLE_IMPLICIT_TOKEN="0", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                   GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO_ROOT))
        token = self.token if token is None else token
        if token:
            env["HF_TOKEN"] = token
        return env

    def run_python(self, code: str | None = None, *, module: str | None = None, args: tuple[str, ...] = (),
                   home: Path | None = None, token: str | None = None, endpoint: str | None = None,
                   timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs ``python -c code`` (or ``-m module``) against this server; output captured as text."""
        command = [sys.executable, *(["-m", module] if module else ["-c", code or ""]), *args]
        return subprocess.run(command, cwd=REPO_ROOT, env=self.client_env(home, token=token, endpoint=endpoint),
                              capture_output=True, text=True, timeout=timeout)

    # ------------------------------------------------------------------ storage
    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.token}"

    def _find(self, request: Request, kind: str, org: str, name: str, *, write: bool = False) -> Repo:
        """The repo of a request; writes need the token, private repos hide behind a 404 like on the Hub."""
        if write:
            self._guard(request)
        repo = self.repos.get(URL_PREFIX.get(TYPES.get(kind, kind), "") + f"{org}/{name}")
        if repo is None or (repo.private and not self._authorized(request)):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _guard(self, request: Request) -> None:
        if not self._authorized(request):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _url(self, repo: Repo) -> str:
        return f"{self.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ------------------------------------------------------------------ the app
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.exception_handler(HubError)
        async def hub_error(request: Request, err: HubError):
            return _error(err.status, err.message, err.code)

        @app.middleware("http")
        async def record(request: Request, call_next):
            self.requests.append(RecordedRequest(request.method, request.url.path, request.url.query,
                                                 {k.lower(): v for k, v in request.headers.items()}))
            for method, pattern, status in self.failures:
                if request.method == method and re.search(pattern, request.url.path):
                    return _error(status, f"injected failure ({status})")
            return await call_next(request)

        @app.get("/api/whoami-v2")
        async def whoami(request: Request):
            self._guard(request)
            return {"type": "user", "name": "tester", "fullname": "Test User", "orgs": [{"name": "org"}],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}}

        @app.post("/api/repos/create")
        async def create_repo(request: Request):
            self._guard(request)
            body = await request.json()
            repo_type = body.get("type") or "model"
            repo_id = f"{body.get('organization') or 'tester'}/{body['name']}"
            if repo_type == "space" and body.get("sdk") not in SPACE_SDKS:
                return _error(400, f"sdk must be one of {sorted(SPACE_SDKS)}")
            with self._lock:
                key = URL_PREFIX[repo_type] + repo_id
                if key in self.repos:
                    return JSONResponse({"error": "You already created this repo", "url": self._url(self.repos[key])},
                                        status_code=409)
                repo = Repo(repo_id, repo_type, private=body.get("visibility") == "private", sdk=body.get("sdk"))
                self.repos[key] = repo
            return {"url": self._url(repo), "name": repo_id, "id": repo_id}

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request):
            body = await request.json()
            errors, warnings = validate_card_yaml(body.get("content", ""), body.get("repoType") or "model")
            payload = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
            return JSONResponse(payload, status_code=400 if errors else 200)

        @app.post("/api/{kind}/{org}/{name}/preupload/{rev}")
        async def preupload(kind: str, org: str, name: str, rev: str, request: Request):
            repo = self._find(request, kind, org, name, write=True)
            current = repo.files(rev)
            body = await request.json()
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                      "oid": git_oid(current[f["path"]]) if f["path"] in current else None} for f in body["files"]]
            return {"files": files, "commitOid": repo.branches.get(rev)}

        @app.post("/api/{kind}/{org}/{name}/branch/{branch}")
        async def create_branch(kind: str, org: str, name: str, branch: str, request: Request):
            repo = self._find(request, kind, org, name, write=True)
            body = await request.json() if await request.body() else {}
            with self._lock:
                repo.create_branch(branch, body.get("startingPoint"))
            return {}

        @app.post("/api/{kind}/{org}/{name}/commit/{rev}")
        async def commit(kind: str, org: str, name: str, rev: str, request: Request):
            repo = self._find(request, kind, org, name, write=True)
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
            create_pr = request.query_params.get("create_pr") == "1"
            with self._lock:
                commit, target = repo.apply_commit(rev, lines, create_pr=create_pr)
            url = self._url(repo)
            return {"commitUrl": f"{url}/commit/{commit.sha}", "commitOid": commit.sha, "success": True,
                    "pullRequestUrl": f"{url}/discussions/{target.rsplit('/', 1)[-1]}" if create_pr else None}

        @app.get("/api/{kind}/{org}/{name}/refs")
        async def refs(kind: str, org: str, name: str, request: Request):
            repo = self._find(request, kind, org, name)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()
                        if not b.startswith("refs/pr/")]
            return {"branches": branches, "converts": [], "tags": []}

        @app.get("/api/{kind}/{org}/{name}/tree/{rev}")
        @app.get("/api/{kind}/{org}/{name}/tree/{rev}/{path:path}")
        async def tree(kind: str, org: str, name: str, rev: str, request: Request, path: str = ""):
            repo = self._find(request, kind, org, name)
            return repo.tree(rev, path.strip("/"), request.query_params.get("recursive", "").lower() == "true")

        @app.get("/api/{kind}/{org}/{name}")
        @app.get("/api/{kind}/{org}/{name}/revision/{rev}")
        async def info(kind: str, org: str, name: str, request: Request, rev: str = "main"):
            repo = self._find(request, kind, org, name)
            commit = repo.head(rev)
            if commit is None:
                return _error(404, "Invalid rev id", "RevisionNotFound")
            siblings = [{"rfilename": p, "size": len(d), "blobId": git_oid(d)} for p, d in sorted(commit.files.items())]
            data = {"id": repo.repo_id, "_id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.sha,
                    "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                    "tags": [], "siblings": siblings, "lastModified": "2026-01-01T00:00:00.000Z",
                    "createdAt": "2026-01-01T00:00:00.000Z"}
            if repo.repo_type == "space":
                data.update(sdk=repo.sdk, runtime={"stage": "RUNNING", "hardware": {"current": "cpu-basic"}})
            return data

        @app.api_route("/{org}/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
        async def resolve_model(org: str, name: str, rev: str, path: str, request: Request):
            return self._resolve(request, "models", org, name, rev, path)

        @app.api_route("/{kind}/{org}/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
        async def resolve_other(kind: str, org: str, name: str, rev: str, path: str, request: Request):
            if kind not in ("spaces", "datasets"):
                return _error(404, "Not found")
            return self._resolve(request, kind, org, name, rev, path)

        return app

    def _resolve(self, request: Request, kind: str, org: str, name: str, rev: str, path: str) -> Response:
        repo = self._find(request, kind, org, name)
        commit = repo.head(rev)
        if commit is None:
            return _error(404, "Invalid rev id", "RevisionNotFound")
        if path not in commit.files:
            return _error(404, "Entry not found", "EntryNotFound")
        data = commit.files[path]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_oid(data)}"', "Accept-Ranges": "bytes"}
        start = 0
        if (m := re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))) is not None:
            start = min(int(m.group(1)), len(data))
        body = data[start:]
        headers["Content-Length"] = str(len(body))
        status = 206 if start else 200
        if request.method == "HEAD":
            return Response(b"", status_code=status, headers=headers)
        return Response(body, status_code=status, headers=headers, media_type="application/octet-stream")
