"""The demo Space: README front matter from spaces_config.yaml, files, upload to a test Hub."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from hub_card import space
from tests.app_server import load_app

SHA = "0123456789abcdef0123456789abcdef01234567"


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def check_space_readme(text: str, model: str, revision: str) -> dict:
    meta = front_matter(text)
    config = space.load_config()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == "6.31.0" == config["sdk_version"]
    assert meta["python_version"] == "3.11" and meta["app_file"] == "app.py"
    assert meta["models"] == [model]
    assert meta["preload_from_hub"] == [f"{model} config.json,model.safetensors {revision}"]
    assert meta["suggested_hardware"] == config["suggested_hardware"] == "cpu-basic"  # the lite model runs on CPU
    assert len(meta["short_description"]) <= 60 and meta["license"]
    body = text.split("---\n", 2)[2]
    # the page's words match what the app shows for the default (speech + words) model
    assert '"video,audio,text"' not in body and "six GIA gate" not in body and "face" not in meta["short_description"]
    assert "per_modality" in body and "agreement" in body and "/gradio_api/mcp/" in body
    return meta


def test_dry_run_renders_the_space(tmp_path):
    out = tmp_path / "space"
    assert space.main(["acme/gia-mic-demo", "--model", f"acme/gia-mic@{SHA}", "--dry-run", str(out)]) == 0
    check_space_readme((out / "README.md").read_text(encoding="utf-8"), "acme/gia-mic", SHA)
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert {"app.py", "README.md", "requirements.txt", "gia_mic/pipeline.py", "gia_mic/presets/tiny.json",
            "gia_app/ui.py", "gia_app/server.py"} <= files
    assert not any("__pycache__" in f or f.startswith(("tests/", "train/")) for f in files)
    reqs = (out / "requirements.txt").read_text(encoding="utf-8")
    assert "torch==" in reqs and "openai-whisper==" in reqs and "mcp==" in reqs and "gradio" not in reqs.split("\n", 1)[1]
    assert "pytest" not in reqs and "playwright" not in reqs
    assert load_app().space_model(out / "README.md") == ("acme/gia-mic", SHA)  # what the uploaded app will load
    imported = subprocess.run([sys.executable, "-c", "import app; print(app.build_demo.__module__)"], cwd=out,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(out)})
    assert imported.returncode == 0 and imported.stdout.strip() == "gia_app.ui", imported.stderr[-2000:]


@pytest.mark.parametrize(("args", "message"), [
    (["bad id", "--model", "acme/m"], "ORG/NAME"),
    (["acme/s", "--model", "not-a-repo"], "ORG/NAME[@REV]"),
])  # fmt: skip
def test_bad_arguments_are_explained(args, message, tmp_path, capsys):
    assert space.main([*args, "--dry-run", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_upload_to_the_test_hub(hub_server, tmp_path):
    code = f"""
from huggingface_hub import HfApi
from hub_card import space
api = HfApi()
api.create_repo("acme/gia-mic")
api.upload_file(path_or_fileobj=b"{{}}", path_in_repo="config.json", repo_id="acme/gia-mic")
assert space.main(["acme/gia-mic-demo", "--model", "acme/gia-mic@{SHA}"]) == 0
assert space.main(["acme/gia-mic-demo", "--model", "acme/gia-mic"]) == 0  # redeploy, revision looked up
print("HEAD", api.model_info("acme/gia-mic").sha)
"""
    done = hub_server.run_python(code, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    head = done.stdout.split("HEAD ")[1].strip()
    repo = hub_server.repo("acme/gia-mic-demo", "space")
    assert repo.sdk == "gradio"
    files = repo.files()
    assert {"app.py", "README.md", "requirements.txt", "gia_mic/pipeline.py", "examples/ATTRIBUTION.md"} <= set(files)
    check_space_readme(files["README.md"].decode(), "acme/gia-mic", head)
    assert len(repo.commits) >= 3  # .gitattributes, first deploy, redeploy
