"""pyproject.toml names every package the code imports, and the wheel carries the whole embedded model.

The slow, end-to-end check (build the wheel, install it into a fresh venv, predict) is
``.ci/wheel_check.sh``; these are the fast static checks that fail first.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FIRST_PARTY = {"gia_mic", "gia_app", "train", "hub_card", "app", "tests", "benchmarks"}
# Imported inside try/except ImportError with a fallback, so no extra has to provide them.
OPTIONAL = {"spaces"}
# openai-whisper is installed with --no-deps next to [asr] (its requirements pull triton); see pyproject.
NO_DEPS = {"openai-whisper": "asr"}


def imported_modules(paths: list[Path]) -> set[str]:
    """Top-level names of every import (module level or inside functions) in ``paths``."""
    return imported_modules_raw(paths) - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"} - OPTIONAL


def imported_modules_raw(paths: list[Path]) -> set[str]:
    """Top-level names of every absolute import in ``paths``, first-party ones included."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def requirement_names(*groups: str) -> set[str]:
    """Normalised distribution names in the core dependencies plus the given extras (recursively)."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for group in groups:
        requirements += project["optional-dependencies"][group]
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    names |= {dist for dist, extra in NO_DEPS.items() if extra in groups}
    return names


def distributions(module: str) -> set[str]:
    found = importlib.metadata.packages_distributions().get(module, [])
    assert found, f"{module} is imported but no installed distribution provides it"
    return {d.lower().replace("_", "-") for d in found}


def missing(paths: list[Path], *groups: str) -> dict[str, set[str]]:
    allowed = requirement_names(*groups)
    return {m: distributions(m) for m in sorted(imported_modules(paths)) if not distributions(m) & allowed}


def test_the_library_imports_only_what_core_and_extras_declare():
    extras = list(PYPROJECT["project"]["optional-dependencies"])
    assert missing(sorted((ROOT / "gia_mic").glob("*.py")), *extras) == {}


def test_the_core_install_covers_every_module_predict_needs():
    """``gia-mic predict`` imports cli -> pipeline -> ... at module level: all must be core."""
    core = [ROOT / "gia_mic" / f"{m}.py" for m in ("cli", "pipeline", "modeling", "modules", "encoders", "processing",
                                                     "configuration", "checkpoint", "media", "utils", "asr", "ct2_whisper")]
    top_level = set()
    for path in core:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level |= {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top_level |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
    top_level -= set(sys.stdlib_module_names) | FIRST_PARTY | {"__future__"}
    allowed = requirement_names()
    assert {m for m in top_level if not distributions(m) & allowed} == set()


def test_train_hub_card_and_app_imports_are_declared_by_their_extras():
    train = sorted((ROOT / "train").glob("*.py")) + sorted((ROOT / "hub_card").glob("*.py"))
    assert missing(train, "train") == {}
    assert missing([ROOT / "app.py", *sorted((ROOT / "gia_app").glob("*.py"))], "app") == {}


def test_the_app_extra_brings_the_mcp_server():
    assert any(r.replace(" ", "").startswith("gradio[mcp]") for r in PYPROJECT["project"]["optional-dependencies"]["app"])
    assert "mcp" in distributions("mcp")


def test_the_library_never_imports_the_app_or_gradio():
    assert not {"gradio", "gia_app", "app"} & imported_modules_raw(sorted((ROOT / "gia_mic").glob("*.py")))


def test_the_wheel_carries_every_file_of_the_embedded_model():
    """A retrained checkpoint that adds a file type the package-data globs miss fails here."""
    tool = PYPROJECT["tool"]["setuptools"]
    assert tool["package-dir"]["gia_mic.embedded"] == "checkpoints"
    patterns = tool["package-data"]["gia_mic.embedded"]
    files = [p.relative_to(ROOT / "checkpoints").as_posix() for p in (ROOT / "checkpoints" / "gia-mic-lite").rglob("*")
             if p.is_file()]
    assert "gia-mic-lite/model.safetensors" in files
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)] == []
