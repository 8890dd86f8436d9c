"""hub_card: the GIA-MIC model card (a Jinja template) and the plain function that renders it.

    from hub_card import render_model_card, check_card
    text = render_model_card(config_dict, train_config_dict, results_dict, repo_id="org/name")
    check_card(text)  # offline: front matter, model-index, required fields

CLI: ``python -m hub_card render --model-dir DIR [--results R] [--train-config T] --out README.md``.
"""

from hub_card.render import KNOWN_DATASETS, build_context, fold_key, model_index, pipeline_tag, render_model_card
from hub_card.validate import CardError, check_card

__all__ = ["KNOWN_DATASETS", "CardError", "build_context", "check_card", "fold_key", "model_index", "pipeline_tag",
           "render_model_card"]
