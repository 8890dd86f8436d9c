"""The model card: front matter, model-index, sections that appear only with data, offline checks, CLI."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from hub_card import KNOWN_DATASETS, CardError, check_card, pipeline_tag, render_model_card
from hub_card.__main__ import main as card_cli
from hub_card.render import PAPER_URL
from tests.hub_server import validate_card_yaml


@pytest.fixture(scope="module")
def model_config():
    from gia_mic import GiaMicConfig

    cfg = GiaMicConfig.from_preset("tiny").to_dict()
    cfg["audio_encoder"] = "microsoft/wavlm-large"  # one Hub id, two carried configs
    return cfg


def fold(k, ua):
    return {"fold": k, "wa": ua - 0.01, "ua": ua, "macro_f1": ua - 0.02, "epochs": 7 + k, "confusion": [[1, 0], [0, 1]],
            "per_class_recall": {"neutral": 0.5, "happy": 0.6, "angry": 0.7, "sad": 0.8}}


RESULTS = {"folds": [fold(k, ua) for k, ua in zip(range(1, 6), (0.61, 0.64, 0.70, 0.66, 0.63))],
           "mean": {"wa": 0.638, "ua": 0.648, "macro_f1": 0.628}, "std": {"wa": 0.03, "ua": 0.031, "macro_f1": 0.029}}
TRAIN = {"data": {"dataset": "iemocap", "label_map": {"happy": ["happy", "excited"]}},
         "optim": {"lr": 5e-5, "batch_size": 8, "epochs": 30, "schedule": {"nested": "dropped"}}}


def front(text):
    return yaml.safe_load(text.split("---\n")[1])


def headers(text):
    return [line for line in text.splitlines() if line.startswith("#")]


def test_minimal_card_has_no_empty_sections(model_config):
    text = render_model_card(model_config)
    check_card(text)
    assert headers(text) == ["# gia-mic", "## Labels", "## Inputs", "## Usage", "## Intended use and limitations",
                             "## Licences", "## Citation"]
    meta = front(text)
    assert meta["library_name"] == "gia-mic" and meta["license"] == "apache-2.0"
    assert "model-index" not in meta and "datasets" not in meta
    assert "ORG/NAME" in text and "\n\n\n" not in text


def test_front_matter_fields(model_config):
    meta = front(render_model_card(model_config, TRAIN, RESULTS, repo_id="org/emo"))
    assert meta["pipeline_tag"] == "video-classification"
    assert {"emotion-recognition", "multimodal", "arxiv:2506.00865"} <= set(meta["tags"])
    assert meta["base_model"] == ["microsoft/wavlm-large"]  # carried configs (id None) are skipped
    assert "datasets" not in meta  # IEMOCAP has no copy on the Hub: named in the text, not linked to a wrong id
    assert meta["license"] == "other" and meta["license_name"] == "iemocap-derived"
    assert meta["license_link"] == KNOWN_DATASETS["iemocap"]["url"]  # the one corpus's own terms
    assert meta["paper_url"] == "https://arxiv.org/abs/2506.00865"


EVALUATIONS = [  # what an evaluation feeds the card: one row per dataset, split and modality set
    {"dataset": "ravdess", "split": "test: actors 21-24", "modalities": "speech + text", "n": 96,
     "wa": 0.71, "ua": 0.70, "macro_f1": 0.69},
    {"dataset": "ravdess", "split": "test: actors 21-24", "modalities": "speech", "n": 96, "wa": 0.7, "ua": 0.69},
    {"dataset": "meld", "split": "test", "modalities": "text", "n": 2610, "wa": 0.52, "ua": 0.41, "macro_f1": 0.4},
    {"dataset": "My own clips", "hub_id": "me/clips", "split": "all", "modalities": "speech", "n": 12, "ua": 0.5},
    {"data": "RAVDESS 17-20 (selection)", "modalities": "speech", "n": 144, "ua": 0.76},  # no split: table only
]


def test_model_index_has_one_entry_per_evaluated_split_and_never_the_validation_folds(model_config):
    selection = {"dataset": "ravdess", "split": "selection: actors 15-16", "modalities": "speech", "n": 72, "ua": 0.9}
    text = render_model_card(model_config, TRAIN, RESULTS, repo_id="org/emo",
                             extra={"evaluations": [*EVALUATIONS, selection]})
    meta = front(text)
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "emo" and len(meta["model-index"][0]["results"]) == 3  # one per test set (dataset and split)
    assert not [r for r in results if r.metric_value == 0.9]  # a selection row is in the table, never model-index
    assert "| ravdess (selection: actors 15-16) | speech | 72 |" in text.replace("RAVDESS", "ravdess")
    assert {(r.dataset_type, r.dataset_split) for r in results} == {
        ("ravdess", "test: actors 21-24"), ("declare-lab/MELD", "test"), ("me/clips", "all")}
    assert {r.dataset_name for r in results} == {"RAVDESS (4-class)", "MELD (4-class)", "My own clips (4-class)"}
    ua = {(r.dataset_type, r.metric_name): r.metric_value for r in results if r.metric_type == "recall"}
    assert ua[("ravdess", "UA (unweighted average recall), speech")] == 0.69
    assert ua[("declare-lab/MELD", "UA (unweighted average recall), text")] == 0.41
    assert not [r for r in results if "fold" in r.dataset_split or r.metric_value in (0.648, 0.61)]
    assert meta["datasets"] == ["declare-lab/MELD", "me/clips"]  # Hub ids only
    assert "| RAVDESS (test: actors 21-24) | speech + text | 96 | 71.00 | 70.00 | 69.00 |" in text
    assert "| RAVDESS 17-20 (selection) | speech | 144 | – | 76.00 | – |" in text
    assert "These are validation figures" in text and "results on held-out test data are under Evaluation" in text
    card = check_card(text)
    assert len(card.data.eval_results) == 9  # 3 + 2 + 3 + 1 metrics
    assert validate_card_yaml(text, "model") == ([], [])  # what the test Hub's /api/validate-yaml says
    assert "model-index" not in front(render_model_card(model_config, TRAIN, RESULTS))  # validation alone: none


def test_licence_links_and_the_project_url_are_never_made_up(model_config):
    mixed = {"data": {"datasets": ["ravdess", "meld"]}}
    meta = front(render_model_card(model_config, mixed))
    assert (meta["license"], meta["license_name"], meta["license_link"]) == (
        "other", "derived-from-training-data", "README.md#licences")
    assert "license_link" not in front(render_model_card(model_config, {"data": {"dataset": "ravdess"}}))
    given = front(render_model_card(model_config, mixed, extra={"license_link": "LICENSE.md"}))
    assert given["license_link"] == "LICENSE.md"
    text = render_model_card(model_config, mixed, RESULTS, extra={"evaluations": EVALUATIONS})
    assert "pip install .   # in a checkout of the gia-mic source" in text and "git+" not in text
    known = {PAPER_URL} | {d["url"] for d in KNOWN_DATASETS.values() if d.get("url")}
    assert set(re.findall(r"https?://[^\s)\"'>]+", text)) <= known  # every URL in the card is a known, real one
    text = render_model_card(model_config, extra={"project_url": "https://example.org/gia-mic"})
    assert 'pip install "gia-mic @ git+https://example.org/gia-mic"' in text


def test_results_ablations_and_revisions_render(model_config):
    extra = {"fold": 3, "best_fold": 3, "ablations": [{"name": "w/o MIC", "wa": 0.6, "ua": 0.62}],
             "revisions": [{"name": "fold-1", "fold": 1, "ua": 0.61}], "plots": ["curves.png"]}
    text = render_model_card(model_config, TRAIN, RESULTS, repo_id="org/emo", extra=extra)
    assert {"## Results", "## Ablations", "## Training data", "## Training procedure",
            "### Other checkpoints in this repo"} <= set(headers(text))
    assert "| 3 (this checkpoint) | 69.00 | 70.00 | 68.00 | 10 |" in text
    assert "| **mean ± std** | 63.80 ± 3.00 | 64.80 ± 3.10 | 62.80 ± 2.90 | |" in text
    assert "| w/o MIC | 60.00 | 62.00 | – |" in text
    assert "5-fold leave-one-session-out" in text and "`happy` ← happy, excited" in text
    assert "fold with the highest validation UA" in text and "![curves.png](curves.png)" in text
    assert "schedule" not in text  # only scalar optimiser settings are shown


def test_usage_and_responsible_use(model_config):
    text = render_model_card(model_config, TRAIN, RESULTS, repo_id="org/emo", extra={"revision": "fold-2"})
    assert 'EmotionRecognizer.from_pretrained("org/emo", revision="fold-2")' in text
    assert "gia-mic predict clip.mp4 --model org/emo --revision fold-2" in text
    for word in ("surveillance", "hiring", "policing", "border control", "diagnosis", "not consented", "acted"):
        assert word in text
    assert "@inproceedings{he2025giamic" in text and "Toda, Tomoki" in text and "2506.00865" in text


def test_pipeline_tag_follows_the_modalities(model_config):
    assert pipeline_tag(["audio", "text"]) == "audio-classification"
    assert pipeline_tag(["text"]) == "text-classification"
    cfg = {**model_config, "modalities": ["audio"]}
    text = render_model_card(cfg)
    assert front(text)["pipeline_tag"] == "audio-classification"
    assert "**video**" not in text and "**text**" not in text and "Whisper" not in text


def test_check_card_rejects_bad_metadata():
    with pytest.raises(CardError, match="(?i)model.index.*(parse|type)"):
        check_card("---\nlibrary_name: gia-mic\npipeline_tag: x\nlicense: mit\ntags: [arxiv:2506.00865]\n"
                   "model-index:\n- name: x\n  results:\n  - task: {}\n---\n")
    with pytest.raises(CardError, match="missing front-matter field 'license'"):
        check_card("---\nlibrary_name: gia-mic\npipeline_tag: x\ntags: [arxiv:2506.00865]\n---\n# hi\n")
    with pytest.raises(CardError, match="license 'other' needs a license_link"):
        check_card("---\nlibrary_name: gia-mic\npipeline_tag: x\nlicense: other\nlicense_name: y\n"
                   "tags: [arxiv:2506.00865]\n---\n")
    with pytest.raises(CardError, match="result on 'D' does not name its split"):
        check_card("---\nlibrary_name: gia-mic\npipeline_tag: x\nlicense: mit\ntags: [arxiv:2506.00865]\n"
                   "model-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d, name: D}\n"
                   "    metrics: [{type: recall, value: 0.5}]\n---\n")
    errors, _ = validate_card_yaml("---\ntags: [1, {a: b}]\nmodel-index: [{name: x}]\n---\n", "model")
    assert len(errors) == 2


def test_cli_renders_a_checked_card(tmp_path, model_config):
    ckpt = tmp_path / "best"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(model_config))
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    (tmp_path / "train_config.yaml").write_text(yaml.safe_dump({"model": model_config, **TRAIN}))
    out = tmp_path / "README.md"
    assert card_cli(["render", "--model-dir", str(ckpt), "--results", str(tmp_path / "results.json"),
                     "--train-config", str(tmp_path / "train_config.yaml"), "--repo-id", "org/emo",
                     "--out", str(out)]) == 0
    card = ModelCard.load(out)
    assert card.data.library_name == "gia-mic" and not card.data.eval_results  # validation folds only
    evaluations = tmp_path / "evaluations.json"
    evaluations.write_text(json.dumps(EVALUATIONS))
    assert card_cli(["render", "--model-dir", str(ckpt), "--evaluations", str(evaluations), "--out", str(out)]) == 0
    assert len(ModelCard.load(out).data.eval_results) == 9
    with pytest.raises(SystemExit, match="does not exist"):
        card_cli(["render", "--model-dir", str(tmp_path / "nope"), "--out", str(out)])


def test_evaluations_notes_and_extra_bullets_render():
    from hub_card import render_model_card

    cfg = {"labels": ["neutral", "happy", "angry", "sad"], "modalities": ["audio", "text"], "sample_rate": 16000,
           "min_audio_seconds": 0.1, "max_audio_seconds": 8.0, "max_text_tokens": 64, "num_frames": 8,
           "audio_encoder": "openai/whisper-tiny.en", "text_encoder": "x/y"}
    extra = {"evaluations": [{"data": "RAVDESS 17-20", "modalities": "speech + text", "n": 144, "wa": 0.8,
                              "ua": 0.79, "macro_f1": 0.78}],
             "notes": ["**No video**: none was paired."], "limitations": ["Acted English only."],
             "license_notes": ["Non-commercial use only."]}
    card = render_model_card(cfg, extra=extra)
    assert "## Evaluation" in card and "| RAVDESS 17-20 | speech + text | 144 | 80.00 | 79.00 | 78.00 |" in card
    assert "## How it was built" in card and "- **No video**: none was paired." in card
    assert "- Acted English only." in card and "- Non-commercial use only." in card
    bare = render_model_card(cfg)
    assert "## Evaluation" not in bare and "## How it was built" not in bare
    assert "| ECE | NLL |" not in card and "Scores are not calibrated probabilities" in card


def test_calibration_columns_and_the_temperature_note():
    from hub_card import render_model_card

    cfg = {"labels": ["neutral", "happy"], "modalities": ["audio"], "sample_rate": 16000, "min_audio_seconds": 0.1,
           "max_audio_seconds": 8.0, "audio_encoder": "openai/whisper-tiny.en", "temperature": 1.8}
    rows = [{"data": "RAVDESS 17-20", "split": "test", "modalities": "speech", "n": 10, "wa": 0.8, "ua": 0.79,
             "macro_f1": 0.78, "ece": 0.051, "nll": 0.6123}, {"data": "MELD dev", "modalities": "text", "n": 5, "ua": 0.5}]
    card = render_model_card(cfg, extra={"evaluations": rows})
    assert "| data | modalities | n | WA | UA | macro F1 | ECE | NLL |" in card
    assert "| RAVDESS 17-20 | speech | 10 | 80.00 | 79.00 | 78.00 | 5.10 | 0.612 |" in card
    assert "| MELD dev | text | 5 | – | 50.00 | – | – | – |" in card
    assert "temperature-scaled (T = 1.80, fitted on the selection split)" in card
    assert "Scores are not calibrated probabilities" in render_model_card({**cfg, "temperature": 1.0})


def test_ablations_with_per_corpus_ua_get_columns(model_config):
    ablations = {"full": {"mean": {"wa": 0.7, "ua": 0.66, "macro_f1": 0.6}, "by_corpus_ua": {"meld": 0.55, "ravdess": 0.77}},
                 "no_mic": {"mean": {"wa": 0.69, "ua": 0.65, "macro_f1": 0.6}, "by_corpus_ua": {"ravdess": 0.74}}}
    text = render_model_card(model_config, TRAIN, RESULTS, repo_id="org/emo", extra={"ablations": ablations})
    assert "| variant | WA | UA | macro F1 | UA meld | UA ravdess |" in text
    assert "| full | 70.00 | 66.00 | 60.00 | 55.00 | 77.00 |" in text
    assert "| no_mic | 69.00 | 65.00 | 60.00 | – | 74.00 |" in text
