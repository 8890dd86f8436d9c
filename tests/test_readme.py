"""The README's Python snippets of "Use it from Python" and "Demo app" run as written against the shipped model.

The app is served once (the embedded checkpoints/gia-mic-lite, ASR off) on a free 127.0.0.1 port that
replaces the README's ``http://127.0.0.1:7860/``; snippets run with the repository root as working
directory (their example paths are ``examples/...``). A line ``print(...)   # text`` must print ``text``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

import pytest

from tests.app_server import REPO_ROOT, serve, tiny_recognizer

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
LITE = REPO_ROOT / "checkpoints" / "gia-mic-lite"
PORT_URL = "http://127.0.0.1:7860/"

pytestmark = pytest.mark.skipif(not (LITE / "model.safetensors").exists() or not (REPO_ROOT / "examples").is_dir(),
                                reason="needs the embedded lite checkpoint and the example clips")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 4)
    return README[start:end if end > 0 else None]


def python_blocks(title: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section(title), re.DOTALL)


def expected_prints(code: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+#\s*(.+)$", code, re.MULTILINE)]


def run_snippet(code: str, url: str | None = None) -> list[str]:
    if url is not None:
        code = code.replace(PORT_URL, url).replace(PORT_URL.rstrip("/") + "/gradio_api", url.rstrip("/") + "/gradio_api")
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README snippet", "exec"), {"__name__": "__readme__"})  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
    return [line for line in out.getvalue().splitlines() if not line.startswith("Loaded as API:")]  # gradio_client's


@pytest.fixture(scope="module")
def app_url():
    with serve(tiny_recognizer(LITE)) as (_, url):
        yield url


def test_the_sections_have_the_snippets_this_test_runs():
    assert len(python_blocks("Use it from Python")) == 1
    demo = python_blocks("Demo app")
    assert len(demo) == 2 and "gradio_client" in demo[0] and "streamable_http_client" in demo[1]
    assert '"video,audio,text"' not in section("Demo app")  # the shipped model reads speech and words only


def test_use_it_from_python_runs_and_prints_what_it_says(monkeypatch):
    from gia_mic import pipeline

    real = pipeline.EmotionRecognizer.from_pretrained.__func__
    monkeypatch.setattr(pipeline.EmotionRecognizer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: real(cls, *a, **{"device": "cpu", **k})))
    code = python_blocks("Use it from Python")[0]
    printed = run_snippet(code)
    assert printed == expected_prints(code) and len(printed) == 2, printed


@pytest.mark.parametrize("index", [0, 1], ids=["gradio_client", "mcp"])
def test_demo_app_snippets_run_against_the_served_lite_model(app_url, index):
    code = python_blocks("Demo app")[index]
    assert PORT_URL.rstrip("/") in code
    printed = run_snippet(code, app_url)
    assert printed == expected_prints(code) and printed, printed


def layout_paths() -> set[str]:
    """Paths named in the README's "Project layout" tree (indented entries live under the last top-level one)."""
    block = re.search(r"```\n(.*?)```", section("Project layout"), re.DOTALL).group(1)
    paths, parent = set(), ""
    for line in block.splitlines():
        name = line.split()[0]
        if line.startswith("  "):
            paths.add(parent + name.rstrip("/"))
        else:
            parent = name if name.endswith("/") else ""
            paths.add(name.rstrip("/"))
    return paths


def test_the_layout_section_matches_the_tree():
    named = layout_paths()
    missing = sorted(p for p in named if not (REPO_ROOT / p).exists())
    assert not missing, f"the README's layout names paths that do not exist: {missing}"
    modules = {p.relative_to(REPO_ROOT).as_posix() for d in ("gia_mic", "gia_app", "train", "hub_card")
               for p in (REPO_ROOT / d).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    unnamed = sorted(modules - named)
    assert not unnamed, f"modules the README's layout does not name: {unnamed}"
