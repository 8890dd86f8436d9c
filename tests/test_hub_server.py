"""The test Hub server itself: auth, branches, commits, trees, downloads (plain HTTP, in process)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import HUB_TOKEN

AUTH = {"authorization": f"Bearer {HUB_TOKEN}"}


def ndjson(*lines):
    return "\n".join(json.dumps(x) for x in lines).encode()


def file_line(path, data):
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


@pytest.fixture()
def http(hub_server):
    with httpx.Client(base_url=hub_server.endpoint) as client:
        yield client


def test_writes_need_the_token_and_private_repos_hide(http, hub_server):
    assert http.post("/api/repos/create", json={"name": "x", "organization": "org"}).status_code == 401
    r = http.post("/api/repos/create", json={"name": "x", "organization": "org", "visibility": "private"}, headers=AUTH)
    assert r.json()["url"] == f"{hub_server.endpoint}/org/x"
    again = http.post("/api/repos/create", json={"name": "x", "organization": "org"}, headers=AUTH)
    assert again.status_code == 409 and again.json()["url"] == r.json()["url"]  # exist_ok reads the url
    hidden = http.get("/api/models/org/x")
    assert hidden.status_code == 404 and hidden.headers["x-error-code"] == "RepoNotFound"
    info = http.get("/api/models/org/x", headers=AUTH).json()
    assert [s["rfilename"] for s in info["siblings"]] == [".gitattributes"] and len(info["sha"]) == 40
    assert http.get("/api/whoami-v2").status_code == 401
    assert http.get("/api/whoami-v2", headers=AUTH).json()["name"] == "tester"


def test_commits_branches_trees_and_resolve(http, hub_server):
    http.post("/api/repos/create", json={"name": "m", "organization": "org"}, headers=AUTH)
    header = {"key": "header", "value": {"summary": "add"}}
    r = http.post("/api/models/org/m/commit/main", headers=AUTH,
                  content=ndjson(header, file_line("a/b.txt", b"hello"), file_line("a/c/d.txt", b"x"),
                                 file_line("e.txt", b"e")))
    first = r.json()["commitOid"]
    no_branch = http.post("/api/models/org/m/commit/fold-1", headers=AUTH, content=ndjson(header))
    assert no_branch.status_code == 404 and no_branch.headers["x-error-code"] == "RevisionNotFound"
    assert http.post("/api/models/org/m/branch/fold-1", headers=AUTH, json={}).status_code == 200
    assert http.post("/api/models/org/m/branch/fold-1", headers=AUTH, json={}).status_code == 409
    http.post("/api/models/org/m/commit/fold-1", headers=AUTH,
              content=ndjson(header, {"key": "deletedFolder", "value": {"path": "a/"}},
                             {"key": "deletedFile", "value": {"path": "e.txt"}}, file_line("f.txt", b"f")))
    repo = hub_server.repo("org/m")
    assert sorted(repo.files("fold-1")) == [".gitattributes", "f.txt"]
    assert sorted(repo.files("main")) == [".gitattributes", "a/b.txt", "a/c/d.txt", "e.txt"]
    top = {e["path"]: e["type"] for e in http.get("/api/models/org/m/tree/main").json()}
    assert top == {".gitattributes": "file", "a": "directory", "e.txt": "file"}
    deep = [e["path"] for e in http.get("/api/models/org/m/tree/main/a", params={"recursive": "true"}).json()]
    assert deep == ["a/b.txt", "a/c", "a/c/d.txt"]
    head = http.head("/org/m/resolve/main/a/b.txt")
    assert head.headers["x-repo-commit"] == first and head.headers["content-length"] == "5" and head.headers["etag"]
    assert http.get("/org/m/resolve/main/a/b.txt", headers={"range": "bytes=1-"}).content == b"ello"
    missing = http.get("/org/m/resolve/fold-1/e.txt")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert {b["name"] for b in http.get("/api/models/org/m/refs").json()["branches"]} == {"main", "fold-1"}


def test_spaces_validation_and_injected_failures(http, hub_server):
    r = http.post("/api/repos/create", json={"name": "demo", "organization": "org", "type": "space", "sdk": "gradio"},
                  headers=AUTH)
    assert r.json()["url"] == f"{hub_server.endpoint}/spaces/org/demo"
    http.post("/api/spaces/org/demo/commit/main", headers=AUTH,
              content=ndjson({"key": "header", "value": {"summary": "app"}}, file_line("app.py", b"print(1)")))
    assert http.get("/spaces/org/demo/resolve/main/app.py").content == b"print(1)"
    assert http.get("/api/spaces/org/demo").json()["sdk"] == "gradio"
    bad = http.post("/api/validate-yaml", json={"content": "---\nsdk: flask\n---\n", "repoType": "space"})
    assert bad.status_code == 400 and "sdk" in bad.json()["errors"][0]["message"]
    hub_server.fail(r"/commit/", status=503)
    assert http.post("/api/spaces/org/demo/commit/main", headers=AUTH, content=b"").status_code == 503
    anonymous = [r.path for r in hub_server.requests if "authorization" not in r.headers]
    assert anonymous[:1] == ["/spaces/org/demo/resolve/main/app.py"]
