"""The processor's default components: what encoders built from a carried config (no Hub id) get."""

from __future__ import annotations

import sys

from gia_mic import GiaMicConfig
from gia_mic.processing import GiaMicProcessor


def test_tiny_preset_tokenizer_is_built_in_code_without_openai_whisper(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "whisper", None)  # `import whisper` now fails: the library must not need it
    processor = GiaMicProcessor.from_config(GiaMicConfig.from_preset("tiny", modalities=["text"]))
    text = "hi café ☕"
    ids = processor(text=[text])["input_ids"][0].tolist()
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) == 2 + len(text.encode("utf-8"))  # <s>, one id per byte, </s>
    assert max(ids) < processor.config.encoder_configs["text"]["vocab_size"]
    processor.save_pretrained(tmp_path)
    again = GiaMicProcessor.from_pretrained(tmp_path, processor.config)
    assert again(text=[text])["input_ids"][0].tolist() == ids
