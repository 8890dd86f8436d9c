"""Where a checkpoint comes from: a local folder, a Hub repo (safe files only), or the default.

``default_model`` is the policy for "no model given" (``$GIA_MIC_MODEL``, else the embedded
default that ships with the project); ``resolve`` turns a folder or ``org/name`` into a
local directory, downloading only data files (never code or pickles).
"""

from __future__ import annotations

import os
from pathlib import Path

from gia_mic.errors import CheckpointError

CONFIG_NAME = "config.json"
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.md", "*/*.json", "*/*.txt", "*/*.model"]
"""Files a Hub download may fetch: configs, weights, vocabularies, the card."""

EMBEDDED_DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "gia-mic-lite"
"""The real model that ships with the project (see the README), in a source checkout."""
PACKAGED_DEFAULT = Path(__file__).resolve().parent / "embedded" / "gia-mic-lite"
"""The same model inside an installed wheel (package data ``gia_mic.embedded``)."""


def default_model() -> str:
    """``$GIA_MIC_MODEL`` if set, else the embedded default (source checkout, then installed wheel).

    Raises:
        CheckpointError: neither is available.
    """
    chosen = os.environ.get("GIA_MIC_MODEL")
    if chosen:
        return chosen
    for folder in (EMBEDDED_DEFAULT, PACKAGED_DEFAULT):
        if (folder / CONFIG_NAME).exists():
            return str(folder)
    raise CheckpointError(f"no model given and the embedded default {EMBEDDED_DEFAULT} is missing: pass "
                          "--model DIR_OR_ORG/NAME (or set GIA_MIC_MODEL), e.g. a checkpoint made by `python -m train`")


def resolve(name_or_path: str | Path, *, revision: str | None = None, **hub_kwargs: object) -> Path:
    """Local directory of a checkpoint: the path itself, or a Hub snapshot (safe files only).

    Raises:
        CheckpointError: missing directory, unreachable Hub with no cached copy, or no repo.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise CheckpointError(f"checkpoint not found: {name!r} is neither a checkpoint directory nor a Hub "
                              "repo id of the form 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=ALLOW_PATTERNS, **hub_kwargs))
    except RevisionNotFoundError:
        raise CheckpointError(f"model repo {name!r} has no revision {revision!r} (a branch, tag or commit); "
                              "check the branch name, e.g. 'main' or 'fold-1'") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"no model repo {name!r} on the Hub (or it is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"cannot load {name!r}@{revision or 'main'}: the Hub is unreachable (offline) and there is no cached "
            f"copy. Fix: connect once so it is cached, run `hf download {name}` and pass the local folder, or "
            "pass a local checkpoint directory."
        ) from None
    except (HfHubHTTPError, OSError) as err:
        raise CheckpointError(f"cannot download {name!r}@{revision or 'main'}: {err}") from None
