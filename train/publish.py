"""Publishes a training run to the Hugging Face Hub.

    python -m train.publish runs/iemocap ORG/NAME            # token: $HF_TOKEN or `hf auth login`
    python -m train.publish runs/iemocap ORG/NAME --private

``main`` gets one checkpoint chosen without looking at test scores: the fold whose *selection*
UA (the training folds' held-out speakers that chose its epoch) is highest, or ``best/`` of a run
without folds; with its rendered model card (``README.md``), ``train_config.yaml``,
``results.json`` and the PNG plots. Each card's ``model-index`` holds only its own checkpoint's
test fold; the other folds' test figures are shown as a cross-validation estimate. Each
``fold_k/best/`` goes to the branch ``fold-k`` with its own card. Uploading only reads the run
directory, so a failed upload leaves it as it was; running the same command again is safe (unchanged files are skipped).
The token is never printed, logged or written.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub_card import CardError, check_card, fold_key, render_model_card

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
_FOLD_DIR = re.compile(r"^fold_(.+)$")
_SKIP = ("README.md",)  # the checkpoint's own README is replaced by the rendered card


class PublishError(RuntimeError):
    """Publishing failed; the message says what happened and how to retry."""


@dataclass
class Run:
    """A trainer output directory, read but never modified.

    Attributes:
        output_dir: The run directory.
        checkpoints: ``{fold name: checkpoint dir}``; ``None`` for a run without folds.
        best: The fold published on ``main``, by selection UA (``None`` for a run without folds).
        results: ``results.json`` (empty when absent).
        train_config: ``train_config.yaml`` (empty when absent).
        plots: ``*.png`` and ``fold_*/*.png``, relative to ``output_dir``.
        ablations: Path of ``ablations.json`` (``python -m train.ablate``), if any.
    """

    output_dir: Path
    checkpoints: dict[str | None, Path]
    best: str | None
    results: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    ablations: Path | None = None

    def fold_entry(self, fold: str | None) -> dict[str, Any]:
        """The fold's entry of ``results.json`` (fold names are strings there, e.g. ``"3"``); ``{}`` if none."""
        for entry in self.results.get("folds") or []:
            if str(entry.get("fold")) == str(fold):
                return entry
        return {}

    def fold_ua(self, fold: str | None) -> float | None:
        """The fold's own UA: the figures that chose its epoch (the selection split since issue 11)."""
        return self.fold_entry(fold).get("ua")

    def test_rows(self, fold: str | None, modalities: list[str]) -> list[dict[str, Any]]:
        """``hub_card`` evaluation rows of the fold's own test split (empty for a run without them)."""
        test = self.fold_entry(fold).get("test")
        if not isinstance(test, dict):
            return []
        data = self.train_config.get("data") or {}
        source = data.get("source")
        return [{"dataset": source if source in ("iemocap",) else None, "split": test.get("split"),
                 "modalities": " + ".join("speech" if m == "audio" else m for m in modalities),
                 **{k: test.get(k) for k in ("n", "wa", "ua", "macro_f1")}}]


def _load(path: Path, kind: str) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise PublishError(f"{path} is not valid {kind.upper()}: {err}") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path} must hold a mapping, got {type(data).__name__}")
    return data


def read_run(output_dir: str | Path) -> Run:
    """Finds the checkpoints, results, training config and plots of a run, and picks the best.

    Raises:
        PublishError: no checkpoint, or folds whose UA ``results.json`` does not give.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise PublishError(f"{output_dir} is not a directory")
    folds = {m.group(1): d / "best" for d in output_dir.iterdir()
             if (m := _FOLD_DIR.match(d.name)) and (d / "best" / CONFIG_NAME).is_file()}
    results = _load(output_dir / "results.json", "json")
    train_config = _load(output_dir / "train_config.yaml", "yaml")
    if folds:
        run = Run(output_dir, {k: folds[k] for k in sorted(folds, key=fold_key)}, None, results, train_config)
        scored = {k: run.fold_ua(k) for k in run.checkpoints}
        unscored = [k for k, ua in scored.items() if not isinstance(ua, (int, float))]
        if unscored:
            raise PublishError(f"{output_dir}/results.json gives no UA for fold(s) {unscored}: it is needed to pick "
                               "the best fold for main (re-run the evaluation, or publish a run with a best/ folder)")
        if not any(run.fold_entry(k).get("test") for k in run.checkpoints):
            logger.warning("%s/results.json has no per-fold test figures (a run from before the epoch was chosen "
                           "inside the training folds): each fold's UA both chose its epoch and is its only figure",
                           output_dir)
        run.best = max(scored, key=lambda k: scored[k])  # by selection UA; ties: the first fold in natural order
    elif (output_dir / "best" / CONFIG_NAME).is_file():
        run = Run(output_dir, {None: output_dir / "best"}, None, results, train_config)
    else:
        raise PublishError(f"no checkpoint in {output_dir}: expected best/ or fold_k/best/ with a {CONFIG_NAME} "
                           "(written by `python -m train`)")
    # Only the run's own plots: a recursive search would also walk the feature cache.
    pngs = [*output_dir.glob("*.png"), *(p for k in folds for p in (output_dir / f"fold_{k}").glob("*.png"))]
    run.plots = sorted(p.relative_to(output_dir) for p in pngs if p.is_file())
    for candidate in (output_dir / "ablations.json", output_dir.parent / "ablations.json"):
        if candidate.is_file() and (candidate.parent == output_dir or output_dir.name == "full"):
            run.ablations = candidate  # `python -m train.ablate DIR` puts the full model in DIR/full
            break
    return run


def _checkpoint_files(directory: Path) -> dict[str, Path]:
    """``{path in repo: local file}`` of a checkpoint, without its README and hidden or partial files."""
    files = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if path.is_file() and rel.as_posix() not in _SKIP and not any(part.startswith(".") for part in rel.parts):
            files[rel.as_posix()] = path
    return files


def _card(run: Run, repo_id: str, fold: str | None, revision: str | None, revisions: list[dict],
          plots: list[str]) -> bytes:
    """The rendered, checked README.md of one checkpoint."""
    model_config = json.loads((run.checkpoints[fold] / CONFIG_NAME).read_text(encoding="utf-8"))
    extra = {"fold": fold, "best_fold": run.best, "revision": revision, "revisions": revisions, "plots": plots,
             "ablations": _load(run.ablations, "json") if run.ablations else None,
             "evaluations": run.test_rows(fold, list(model_config.get("modalities") or []))}
    text = render_model_card(model_config, run.train_config, run.results, repo_id=repo_id, extra=extra)
    check_card(text)
    return text.encode("utf-8")


def _commit(api: Any, repo_id: str, revision: str, files: dict[str, Path | bytes], message: str, *,
            prune: bool) -> None:
    """One commit that makes ``revision`` hold ``files``; with ``prune``, removes every other file."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=src) for p, src in files.items()]
    if prune:
        stale = set(api.list_repo_files(repo_id, revision=revision)) - set(files) - {".gitattributes"}
        operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(stale)]
    logger.info("%s@%s: committing %d file(s)%s", repo_id, revision, len(files),
                f", deleting {len(operations) - len(files)}" if len(operations) > len(files) else "")
    api.create_commit(repo_id, operations, commit_message=message, revision=revision)


def _retry_command(output_dir: Path, repo_id: str, private: bool, revision_prefix: str) -> str:
    parts = ["python", "-m", "train.publish", str(output_dir), repo_id]
    parts += ["--private"] if private else []
    parts += ["--revision-prefix", revision_prefix] if revision_prefix != "fold-" else []
    return shlex.join(parts)


def publish(output_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
            revision_prefix: str = "fold-") -> str:
    """Uploads a run: the best checkpoint and its card to ``main``, each fold to its own branch.

    Args:
        output_dir: The trainer's output directory (``best/`` or ``fold_k/best/``,
            ``results.json``, ``train_config.yaml``, PNG plots).
        repo_id: ``org/name`` of the model repo (created if missing).
        token: Hub token; ``None`` uses ``$HF_TOKEN`` or the stored login.
        private: Create the repo private (ignored when it already exists).
        revision_prefix: Branch name prefix of the per-fold checkpoints (``fold-1`` …).

    Returns:
        The repo URL.

    Raises:
        PublishError: the run is incomplete, no token is available, or an upload failed
            (the message names what was already published and the command that retries).
    """
    from huggingface_hub import HfApi, get_token

    output_dir = Path(output_dir)
    run = read_run(output_dir)
    retry = _retry_command(output_dir, repo_id, private, revision_prefix)
    if token is None and get_token() is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then run: " + retry)
    plan = _plan(run, repo_id, revision_prefix)  # every card is rendered and checked before any upload
    api = HfApi(token=token)
    done: list[str] = []
    try:
        url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        for revision, files, message in plan:
            if revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            _commit(api, repo_id, revision, files, message, prune=revision != "main")
            done.append(revision)
    except Exception as err:  # any failure becomes one actionable message
        published = f"already published: {', '.join(done)}; " if done else "nothing was published; "
        raise PublishError(f"upload to {repo_id} failed: {type(err).__name__}: {err}\n{published}the local run "
                           f"{output_dir} is unchanged. Retry (safe to repeat) with:\n  {retry}") from err
    logger.info("published %s (main: %s; branches: %s)", url, plan[0][2], ", ".join(done[1:]) or "none")
    return url


def _plan(run: Run, repo_id: str, revision_prefix: str) -> list[tuple[str, dict[str, Path | bytes], str]]:
    """``[(revision, {path in repo: file or bytes}, commit message)]``, ``main`` first.

    Raises:
        PublishError: a rendered card does not validate.
    """
    out = run.output_dir
    folds = [k for k in run.checkpoints if k is not None]
    revisions = [{"name": f"{revision_prefix}{k}", "fold": k, "ua": run.fold_ua(k)} for k in folds]
    shared: dict[str, Path | bytes] = {name: out / name for name in ("train_config.yaml", "results.json")
                                       if (out / name).is_file()}
    if run.ablations:
        shared["ablations.json"] = run.ablations
    main_files: dict[str, Path | bytes] = {**_checkpoint_files(run.checkpoints[run.best]), **shared,
                                           **{p.as_posix(): out / p for p in run.plots}}
    best = f"fold {run.best} (selection UA {run.fold_ua(run.best):.4f})" if run.best is not None else "best/"
    try:
        main_files["README.md"] = _card(run, repo_id, run.best, None, revisions, [p.as_posix() for p in run.plots])
        plan = [("main", main_files, f"Publish {best}")]
        for k in folds:
            branch = f"{revision_prefix}{k}"
            plots = {p.relative_to(f"fold_{k}").as_posix(): out / p for p in run.plots if p.parts[0] == f"fold_{k}"}
            files: dict[str, Path | bytes] = {**_checkpoint_files(run.checkpoints[k]), **plots,
                                              **{n: f for n, f in shared.items() if n == "train_config.yaml"}}
            files["README.md"] = _card(run, repo_id, k, branch, [], sorted(plots))
            plan.append((branch, files, f"Publish fold {k} checkpoint"))
    except CardError as err:
        raise PublishError(f"the model card of {run.output_dir} does not validate: {err}") from None
    return plan


def main(argv: list[str] | None = None) -> int:
    """``python -m train.publish DIR ORG/NAME``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m train.publish",
                                     description="Upload a training run to the Hugging Face Hub.")
    parser.add_argument("output_dir", type=Path, help="the run directory written by `python -m train`")
    parser.add_argument("repo_id", help="ORG/NAME of the model repo (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision-prefix", default="fold-", help="branch prefix of per-fold checkpoints")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()  # our progress only; huggingface_hub keeps its own warnings handler
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        url = publish(args.output_dir, args.repo_id, private=args.private, revision_prefix=args.revision_prefix)
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
