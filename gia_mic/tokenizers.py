"""A RoBERTa-style byte-level BPE tokenizer built offline from openai-whisper's GPT-2 ranks.

Used by the ``tiny`` preset and the tests: realistic subword tokenisation with no download.
The merges are RoBERTa's (GPT-2 byte-level BPE); the ids are GPT-2's, so it is *not* a
drop-in for ``roberta-base`` weights.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    import whisper
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(whisper.__file__).parent / "assets" / "gpt2.tiktoken"
    return TikTokenConverter(str(ranks)).extract_vocab_merges_from_model(str(ranks))


def byte_level_bpe_tokenizer(model_max_length: int = 512):
    """Returns a fast RoBERTa tokenizer over the GPT-2 byte-level BPE (50,261 ids, RoBERTa's special ids)."""
    from transformers import RobertaTokenizerFast

    ranks, merges = _vocab_and_merges()
    # RoBERTa's special ids (<s>=0, <pad>=1, </s>=2, <unk>=3) keep its position-id scheme valid.
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({token: rank + 4 for token, rank in ranks.items()})
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizerFast(vocab=vocab, merges=list(merges), model_max_length=model_max_length)
