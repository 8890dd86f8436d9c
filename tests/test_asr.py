"""Transcripts: given text wins, the real Whisper path (random tiny model), clear 'missing' reasons."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gia_mic.asr import WhisperTranscriber, resolve_transcript


@pytest.fixture(scope="module")
def tiny_whisper():
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    return Whisper(dims).eval()


def test_random_tiny_whisper_runs_the_real_path(tiny_whisper, monkeypatch):
    calls = []
    real = tiny_whisper.transcribe

    def spy(audio, **kw):
        calls.append(audio.shape)
        return real(audio, **kw)

    monkeypatch.setattr(tiny_whisper, "transcribe", spy)
    wave = (np.sin(np.linspace(0, 2000, 32000)) * 0.3).astype(np.float32)
    result = WhisperTranscriber(tiny_whisper, device="cpu").transcribe(wave)
    assert calls == [(32000,)]
    if result.text is None:  # random weights may decode nothing; then the reason says so
        assert result.source == "missing" and "no words" in result.reason
    else:
        assert result.source == "whisper:custom" and result.reason is None and result.text.strip()


def test_given_text_wins_and_whisper_is_not_called(tiny_whisper, monkeypatch):
    monkeypatch.setattr(tiny_whisper, "transcribe", lambda *a, **k: pytest.fail("ASR ran although text was given"))
    t = resolve_transcript("  I am   fine ", np.zeros(16000, np.float32), WhisperTranscriber(tiny_whisper))
    assert (t.text, t.source) == ("I am fine", "given")


def test_empty_text_falls_back_to_asr(tiny_whisper):
    t = resolve_transcript("   ", np.zeros(16000, np.float32), WhisperTranscriber(tiny_whisper))
    assert t.source != "given"


def test_uncached_official_model_offline_is_missing_with_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = WhisperTranscriber("base.en", download_root=str(tmp_path)).transcribe(np.zeros(16000, np.float32))
    assert t.text is None and t.source == "missing"
    assert "not cached" in t.reason and "offline" in t.reason


def test_unknown_model_name_is_missing_with_reason():
    transcriber = WhisperTranscriber("no-such-whisper")
    ok, reason = transcriber.available()
    assert not ok and "neither an official name nor a file" in reason


def test_no_transcriber_and_no_text():
    t = resolve_transcript(None, np.zeros(16000, np.float32), None)
    assert t.text is None and "ASR is off" in t.reason


def test_non_utf8_transcript_is_refused():
    from gia_mic import InputError

    with pytest.raises(InputError, match="not valid UTF-8"):
        resolve_transcript(b"caf\xe9", None, None)
