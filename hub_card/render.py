"""Builds the model card's values from plain dicts and renders the Jinja template.

Everything the card says comes from three plain values: the model config (``config.json``),
the training config (``train_config.yaml``) and the results (``results.json``). Nothing here
imports torch or ``gia_mic``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"
PAPER = "arXiv:2506.00865"
PAPER_URL = "https://arxiv.org/abs/2506.00865"
CODE_LICENSE = "apache-2.0"
TAGS = ["gia-mic", "emotion-recognition", "multimodal", "arxiv:2506.00865"]
LICENCES_SECTION = "README.md#licences"
"""``license_link`` of weights under several corpora's terms: the card's own Licences section lists each."""

# Licence and provenance of the corpora this project knows (see DATA.md); others are shown as given.
# ``hub_id``: the corpus's own copy on the Hub (by its authors), None where there is none.
KNOWN_DATASETS: dict[str, dict[str, Any]] = {
    "iemocap": {"name": "IEMOCAP", "license": "other", "acted": True, "sessions": 5,
                "license_note": "USC IEMOCAP release agreement: research use only, no redistribution",
                "url": "https://sail.usc.edu/iemocap/"},
    "ravdess": {"name": "RAVDESS", "license": "cc-by-nc-sa-4.0", "acted": True,
                "url": "https://zenodo.org/records/1188976"},
    "meld": {"name": "MELD", "license": "gpl-3.0", "acted": True, "url": "https://affective-meld.github.io/",
             "note": "dialogue from the TV series Friends", "hub_id": "declare-lab/MELD"},
    "cremad": {"name": "CREMA-D", "license": "odbl", "acted": True,
               "url": "https://github.com/CheyneyComputerScience/CREMA-D"},
    "nemo": {"name": "nEMO", "license": "cc-by-nc-sa-4.0", "acted": True, "url": "https://github.com/amu-cai/nEMO",
             "note": "emotional speech in Polish", "hub_id": "amu-cai/nEMO"},
    "synthetic": {"name": "Synthetic clips generated in code (`train.data`)", "synthetic": True},
}
_DATASET_FIELDS = {"name": None, "license": None, "license_note": None, "url": None, "note": None, "acted": False,
                   "sessions": None, "synthetic": False, "hub_id": None}
_ALIASES = {"crema-d": "cremad", "crema_d": "cremad"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_MODALITY_TAG = {
    # The Hub has no multimodal-classification task. A clip with video is a video file with its
    # sound (what `gia-mic predict clip.mp4` takes), so "video-classification" describes the input
    # best; without video the input is a speech clip (plus its transcript), i.e. audio
    # classification; text alone is text classification.
    "video": "video-classification",
    "audio": "audio-classification",
    "text": "text-classification",
}


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated values in full (no ``&id001`` anchors in the front matter)."""

    def ignore_aliases(self, data: object) -> bool:
        """Never use an alias."""
        return True


def front_matter_yaml(data: dict[str, Any]) -> str:
    """YAML front matter of a card or Space README: keys in order, no anchors, Unicode kept."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)


def pipeline_tag(modalities: list[str]) -> str:
    """The Hub task that best names a checkpoint trained with ``modalities``."""
    for m in ("video", "audio", "text"):
        if m in modalities:
            return _MODALITY_TAG[m]
    raise ValueError(f"no known modality in {modalities}")


def _dataset_entry(raw: object) -> dict[str, Any]:
    """A corpus's card values: ``KNOWN_DATASETS``' for a known id or alias, else just its name."""
    key = _ALIASES.get(str(raw).lower(), str(raw).lower())
    return {**_DATASET_FIELDS, "id": key, **KNOWN_DATASETS.get(key, {"name": str(raw)})}


def _dataset_entries(train_config: dict, extra: dict) -> list[dict[str, Any]]:
    """Datasets from ``extra["datasets"]``, else the training config's ``data`` section.

    ``train.config.DataConfig`` names its source (``iemocap``, ``manifest`` with a CSV path,
    ``synthetic``); a manifest is recognised by a known corpus name in its path.
    """
    data = train_config.get("data") or {}
    names = extra.get("datasets") or data.get("datasets") or data.get("dataset")
    if not names:
        source = str(data.get("source") or "")
        if source == "manifest":
            manifest = str(data.get("manifest") or "").lower()
            known = [k for k in (*KNOWN_DATASETS, *_ALIASES) if k in manifest]
            names = known[:1] or ([Path(manifest).stem] if manifest else [])
        else:
            names = [source] if source else []
    if isinstance(names, str):
        names = [names]
    return [_dataset_entry(raw) for raw in names]


def fold_key(fold: object) -> tuple:
    """Natural order of fold names (``"2"`` before ``"10"``; numbers before names).

    The trainer (``train.data.make_folds``) and ``train.publish`` order folds with it too.
    """
    return (0, int(fold), "") if str(fold).isdigit() else (1, 0, str(fold))


def _rows(items: object, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Dict rows with every key of ``keys`` present (``None`` when missing)."""
    return [{k: None for k in keys} | item for item in (items or []) if isinstance(item, dict)]


def _folds(results: dict) -> list[dict[str, Any]]:
    folds = _rows(results.get("folds"), ("fold", "wa", "ua", "macro_f1", "epochs", "per_class_recall", "test"))
    return sorted(folds, key=lambda f: fold_key(f["fold"]))


def _protocol(train_config: dict, results: dict, datasets: list[dict], extra: dict) -> str | None:
    data = train_config.get("data") or {}
    given = extra.get("protocol") or data.get("protocol")
    if given:
        return str(given)
    n = len(_folds(results))
    if n <= 1:
        return "speaker-independent held-out split" if results else None
    if len(datasets) == 1 and datasets[0]["id"] == "iemocap" and len(data.get("iemocap_sessions") or range(5)) == n:
        return f"{n}-fold leave-one-session-out"
    return f"{n}-fold speaker-independent cross-validation"


def _label_map(data: dict) -> dict[str, list[str]]:
    """``{model label: [raw names]}`` from ``raw -> label`` (the trainer's form) or ``label -> [raw]``."""
    out: dict[str, list[str]] = {}
    for key, value in (data.get("label_map") or {}).items():
        if isinstance(value, str):
            out.setdefault(value, []).append(str(key))
        else:
            out.setdefault(str(key), []).extend(str(v) for v in value)
    return out


def _ablations(extra: dict, results: dict) -> list[dict[str, Any]]:
    """Rows ``{"name", "wa", "ua", "macro_f1"}`` from a list, or ``ablations.json`` (``{name: {"mean": ...}}``)."""
    given = extra.get("ablations") or results.get("ablations") or []
    if isinstance(given, dict):
        given = [{"name": name, **(r.get("mean") or {}), "by_corpus_ua": r.get("by_corpus_ua") or {}}
                 for name, r in given.items() if isinstance(r, dict)]
    rows = _rows(given, ("name", "variant", "wa", "ua", "macro_f1", "by_corpus_ua"))
    return [a | {"name": a["name"] or a["variant"], "by_corpus_ua": a["by_corpus_ua"] or {}} for a in rows]


def _license(train_config: dict, datasets: list[dict], extra: dict) -> tuple[str, str | None, str | None]:
    """``(license id, licence name, licence link)`` of the weights; name and link only for ``"other"``."""
    given = extra.get("license") or train_config.get("license")
    real = [d for d in datasets if not d["synthetic"]]
    if given:
        license_id, name = str(given), extra.get("license_name")
    elif not real:
        return CODE_LICENSE, None, None
    else:
        licences = {d["license"] for d in real if d.get("license")}
        if len(licences) == 1 and all(d.get("license") for d in real):
            license_id = licences.pop()
            name = f"{real[0]['id']}-derived" if license_id == "other" else None
        else:
            license_id, name = "other", "derived-from-training-data"
    if license_id != "other":
        return license_id, name, None
    link = extra.get("license_link")
    if not link:  # one corpus's own terms, else the card's Licences section, which names every corpus's
        link = real[0]["url"] if len(real) == 1 and real[0]["license"] == "other" and real[0]["url"] else LICENCES_SECTION
    return license_id, name, link


def project_url(extra: dict | None = None) -> str | None:
    """Where the project's source lives, or ``None`` when that is not known (no URL is made up).

    ``extra["project_url"]`` when given, else the ``Source`` / ``Repository`` / ``Homepage`` entry
    of ``[project.urls]`` in the installed gia-mic package's metadata (``pyproject.toml``).
    """
    given = (extra or {}).get("project_url")
    if given:
        return str(given)
    try:
        from importlib.metadata import PackageNotFoundError, metadata

        entries = metadata("gia-mic").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("source", "repository", "homepage") and url.strip().startswith("https://"):
            return url.strip()
    return None


def _encoders(cfg: dict) -> list[dict[str, Any]]:
    rows = []
    for m in cfg.get("modalities") or []:
        ident = cfg.get(f"{m}_encoder")
        rows.append({"modality": m, "id": ident, "revision": cfg.get(f"{m}_encoder_revision") or "main",
                     "frozen": bool(cfg.get(f"freeze_{m}_encoder", False)),
                     "hub": bool(ident and _HUB_ID.match(ident) and not Path(ident).exists())})
    return rows


def _stats(results: dict) -> tuple[dict, dict]:
    folds = _folds(results)
    mean, std = dict(results.get("mean") or {}), dict(results.get("std") or {}) if len(folds) != 1 else {}
    for key in ("wa", "ua", "macro_f1"):  # fill what results.json left out, from the folds
        values = [f[key] for f in folds if isinstance(f.get(key), (int, float))]
        if key not in mean and values:
            mean[key] = sum(values) / len(values)
        if key not in std and len(folds) > 1 and len(values) > 1:
            mu = sum(values) / len(values)
            std[key] = (sum((v - mu) ** 2 for v in values) / len(values)) ** 0.5
    return mean, std


def _per_class(results: dict, labels: list[str]) -> list[dict[str, Any]]:
    """Mean recall per class over the folds that report it."""
    rows = []
    for label in labels:
        values = [f["per_class_recall"][label] for f in _folds(results)
                  if isinstance(f.get("per_class_recall"), dict)
                  and isinstance(f["per_class_recall"].get(label), (int, float))]
        if values:
            rows.append({"label": label, "recall": sum(values) / len(values), "n": len(values)})
    return rows


def _metric_list(entry: dict, suffix: str = "") -> list[dict[str, Any]]:
    metrics = []
    for key, mtype, name in (("wa", "accuracy", "WA (weighted accuracy)"),
                             ("ua", "recall", "UA (unweighted average recall)"),
                             ("macro_f1", "f1", "macro F1")):
        if isinstance(entry.get(key), (int, float)):
            metrics.append({"type": mtype, "value": round(float(entry[key]), 4), "name": name + suffix})
    return metrics


EVALUATION_FIELDS = ("data", "dataset", "hub_id", "split", "modalities", "n", "wa", "ua", "macro_f1", "ece", "nll")
"""The keys of an ``evaluations`` row (see ``render_model_card``)."""


def _evaluations(extra: dict) -> list[dict[str, Any]]:
    """``extra["evaluations"]`` rows with every key, the corpus's values and a table label filled in."""
    rows = []
    for row in _rows(extra.get("evaluations"), EVALUATION_FIELDS):
        corpus = _dataset_entry(row["dataset"]) if row["dataset"] else None
        hub_id = row["hub_id"] or (corpus["hub_id"] if corpus else None)
        name = corpus["name"] if corpus else None
        label = row["data"] or " ".join(str(x) for x in (name, f"({row['split']})" if row["split"] else None) if x)
        rows.append(row | {"hub_id": hub_id, "name": name or row["data"], "data": label or "–",
                           "type": hub_id or (corpus["id"] if corpus else None)})
    return rows


NOT_TEST_SPLITS = ("selection", "validation", "val", "train")
"""Split names (or their first word) that never become ``model-index`` entries: they trained or chose the model."""


def _is_test_split(split: object) -> bool:
    first = re.split(r"[\s:(]", str(split or "").strip().lower(), maxsplit=1)[0]
    return bool(first) and first not in NOT_TEST_SPLITS


def model_index(name: str, task: str, evaluations: list[dict[str, Any]], n_labels: int) -> list[dict[str, Any]] | None:
    """``model-index``: one entry per evaluated dataset and split, its metrics named by modality set.

    Only rows that name their split and their dataset become entries, and never a split that
    trained or chose the model (``NOT_TEST_SPLITS``): the training run's validation figures chose
    the epoch, so they are no test of the model. Rows of one dataset and split (e.g. speech + text,
    speech, text) share one entry.
    """
    task_entry = {"type": task, "name": "Multimodal emotion recognition"}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for row in evaluations:
        suffix = f", {row['modalities']}" if row["modalities"] else ""
        if not (_is_test_split(row["split"]) and row["type"]) or not (metrics := _metric_list(row, suffix)):
            continue
        key = (str(row["type"]), str(row["split"]))
        dataset = {"type": row["type"], "name": f"{row['name']} ({n_labels}-class)", "split": str(row["split"])}
        entries.setdefault(key, {"task": task_entry, "dataset": dataset, "metrics": []})["metrics"] += metrics
    return [{"name": name, "results": list(entries.values())}] if entries else None


def build_context(model_config: dict, train_config: dict | None = None, results: dict | None = None, *,
                  repo_id: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """Every value the template shows; sections are dropped by the template when empty."""
    train_config, results, extra = train_config or {}, results or {}, extra or {}
    cfg = model_config
    labels, modalities = list(cfg.get("labels") or []), list(cfg.get("modalities") or [])
    datasets = _dataset_entries(train_config, extra)
    protocol = _protocol(train_config, results, datasets, extra)
    license_id, license_name, license_link = _license(train_config, datasets, extra)
    name = extra.get("model_name") or (repo_id.split("/")[-1] if repo_id else "gia-mic")
    task = pipeline_tag(modalities)
    encoders = _encoders(cfg)
    evaluations = _evaluations(extra)
    mean, std = _stats(results)
    front: dict[str, Any] = {"library_name": "gia-mic", "pipeline_tag": task, "license": license_id}
    front.update({k: v for k, v in (("license_name", license_name), ("license_link", license_link)) if v})
    front["paper_url"] = PAPER_URL
    front["tags"] = TAGS + [m for m in modalities]
    if base := [e["id"] for e in encoders if e["hub"]]:
        front["base_model"] = base
    hub_ids = [d["hub_id"] for d in datasets if d["hub_id"]] + [e["hub_id"] for e in evaluations if e["hub_id"]]
    if hub_ids:  # Hub dataset ids only: a corpus without one is named in the card's text
        front["datasets"] = list(dict.fromkeys(hub_ids))
    if index := model_index(name, task, evaluations, len(labels)):
        front["model-index"] = index
    ablations = _ablations(extra, results)
    settings = {**(train_config.get("optim") or {}),
                **{k: train_config[k] for k in ("seed", "mixed_precision") if k in train_config}}
    optim = {k: ", ".join(map(str, v)) if isinstance(v, list) and all(isinstance(x, (int, float, str)) for x in v) else v
             for k, v in settings.items()}
    optim = {k: v for k, v in optim.items() if isinstance(v, (int, float, str, bool))}
    data = train_config.get("data") or {}
    return {
        "front_matter": front_matter_yaml(front),
        "name": name, "repo_id": repo_id or "ORG/NAME", "labels": labels, "modalities": modalities,
        "encoders": encoders, "cfg": cfg, "task": task, "datasets": datasets, "protocol": protocol,
        "split": data.get("split"), "label_map": _label_map(data), "license": license_id,
        "folds": _folds(results), "mean": mean, "std": std, "per_class": _per_class(results, labels),
        "test_mean": dict(results.get("test_mean") or {}), "test_std": dict(results.get("test_std") or {}),
        "ablations": ablations,
        "ablation_corpora": sorted({c for a in ablations for c in a["by_corpus_ua"]}),
        "optim": optim, "fold": extra.get("fold"), "revision": extra.get("revision"),
        "revisions": _rows(extra.get("revisions"), ("name", "fold", "ua")),
        "best_fold": extra.get("best_fold"), "plots": extra.get("plots") or [],
        "results_split": str(extra.get("results_split") or results.get("split") or "validation"),
        "evaluations": evaluations, "project_url": project_url(extra),
        "notes": [str(n) for n in extra.get("notes") or []],
        "limitations": [str(n) for n in extra.get("limitations") or []],
        "license_notes": [str(n) for n in extra.get("license_notes") or []],
        "details": extra.get("details") or {},
        "acted": any(d["acted"] for d in datasets), "synthetic": any(d["synthetic"] for d in datasets),
        "real_data": any(not d["synthetic"] for d in datasets),
    }


def _pct(value: object) -> str:
    return f"{100 * float(value):.2f}" if isinstance(value, (int, float)) else "–"


def _md(value: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _oneline(text: str) -> str:
    """A paragraph wrapped in a template, as one Markdown line."""
    return " ".join(str(text).split())


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(pct=_pct, md=_md, oneline=_oneline)
    return env


def render_model_card(model_config: dict, train_config: dict | None = None, results: dict | None = None, *,
                      repo_id: str | None = None, extra: dict | None = None, template: str = "model_card.md.j2") -> str:
    """Renders ``templates/model_card.md.j2`` (or a template extending it) into a README.md with front matter.

    Args:
        model_config: The ``GiaMicConfig`` dict (``config.json``).
        train_config: ``train_config.yaml`` as a dict (``model``, ``data``, ``optim`` sections).
        results: ``results.json`` as a dict (``folds``, ``mean``, ``std``; fractions in [0, 1]).
        repo_id: ``org/name`` used in the usage snippets (``ORG/NAME`` when not given).
        extra: Optional values: ``datasets``, ``protocol``, ``license``, ``license_name``,
            ``license_link`` (default for ``license: other``: the one corpus's terms, else the
            card's Licences section), ``project_url`` (default: ``project_url()``; no install
            URL is shown when unknown), ``model_name``,
            ``ablations`` (``[{"name", "wa", "ua", "macro_f1"}]`` or ``ablations.json``'s
            ``{name: {"mean": ...}}``), ``fold`` (this checkpoint's
            fold), ``revision``, ``best_fold``, ``revisions`` (``[{"name", "fold", "ua"}]``),
            ``plots`` (paths in the repo), ``results_split`` (what ``results``' single split
            is called in the Results table; default ``validation``), ``evaluations`` (held-out results, below), ``notes``
            (Markdown bullets on how the model was built), ``limitations`` and ``license_notes``
            (extra bullets for those sections), ``details`` (plain values for a checkpoint's own
            template, e.g. ``gia-mic-lite.md.j2``).

            ``evaluations`` is a list of plain dicts, one per evaluated dataset, split and
            modality set, e.g. from ``gia-mic evaluate --json``::

                {"dataset": "ravdess",             # a KNOWN_DATASETS id (name, licence, Hub id filled in) or a name
                 "hub_id": None,                   # Hub dataset id; default KNOWN_DATASETS' (None where none exists)
                 "split": "test: actors 21-24",    # the split; a row without one gets no model-index entry
                 "modalities": "speech + text",
                 "n": 96, "wa": 0.71, "ua": 0.70, "macro_f1": 0.69,  # fractions in [0, 1]
                 "ece": 0.05, "nll": 0.8,          # optional: calibration of the scores
                 "data": "RAVDESS actors 21-24"}   # optional table label (default: name and split)

            The rows of one dataset and split become one ``model-index`` entry (metrics named
            with the modalities); a split named ``selection``/``validation``/``train`` (first
            word) never does. ``results``' validation folds are shown in the card, never in
            ``model-index``.
        template: The template in ``templates/``; a checkpoint's own one extends
            ``model_card.md.j2`` and overrides its ``notes``, ``limitations`` and
            ``license_notes`` blocks.

    Returns:
        The card's text. Sections without data are left out.
    """
    text = _environment().get_template(template).render(
        **build_context(model_config, train_config, results, repo_id=repo_id, extra=extra))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
