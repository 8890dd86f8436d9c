"""Offline model-card checks: what the Hub's ``/api/validate-yaml`` and card parser would reject."""

from __future__ import annotations

from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

REQUIRED = ("library_name", "pipeline_tag", "license", "tags")


class CardError(ValueError):
    """The card's metadata is invalid; the message lists every problem."""


def check_card(content: str) -> ModelCard:
    """Parses a README.md the way ``huggingface_hub`` does and checks the fields this project relies on.

    Args:
        content: The card's text, front matter included.

    Returns:
        The parsed ``ModelCard`` (``card.data`` holds the metadata, ``card.data.eval_results``
        the flattened ``model-index``).

    Raises:
        CardError: invalid YAML, a missing field, or a ``model-index`` that does not parse.
    """
    try:
        card = ModelCard(content, ignore_metadata_errors=False)
    except ValueError as err:
        raise CardError(f"the card does not parse: {err}") from None
    meta = card.data.to_dict()
    problems = [f"missing front-matter field {key!r}" for key in REQUIRED if not meta.get(key)]
    if meta.get("library_name") not in (None, "gia-mic"):
        problems.append(f"library_name is {meta['library_name']!r}, expected 'gia-mic'")
    if "arxiv:2506.00865" not in (meta.get("tags") or []):
        problems.append("tags lack 'arxiv:2506.00865'")
    if meta.get("license") == "other":
        problems += [f"license 'other' needs a {key}" for key in ("license_name", "license_link") if not meta.get(key)]
    for key in ("base_model", "datasets", "tags"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            problems.append(f"{key} must be a list of non-empty strings")
    if "model-index" in meta or card.data.eval_results:
        index = meta.get("model-index")
        try:
            _, results = model_index_to_eval_results(index)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            problems.append(f"model-index does not parse: {type(err).__name__}: {err}")
        else:
            problems += [f"model-index metric {r.metric_type!r} has a non-numeric value {r.metric_value!r}"
                         for r in results if not isinstance(r.metric_value, (int, float))]
            problems += sorted({f"model-index result on {r.dataset_name!r} does not name its split"
                                for r in results if not r.dataset_split})
    if problems:
        raise CardError("invalid model card: " + "; ".join(problems))
    return card
