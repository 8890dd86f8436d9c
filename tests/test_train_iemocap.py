"""IEMOCAP reader on a small synthetic tree in the official release layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.clips import make_clip, red_level_to_fraction
from train.data import load_raw, make_folds
from train.iemocap import crop_side, read_iemocap, speaker_of

LABELS = ["neutral", "happy", "angry", "sad"]
DIALOGS = {
    1: ("Ses01F_impro01", [("F000", "neu"), ("M000", "exc"), ("F001", "hap"), ("M001", "fru"), ("F002", "xxx")]),
    2: ("Ses02M_script01_1", [("M000", "ang"), ("F000", "sad"), ("M001", "neu"), ("F001", "sur")]),
}
SECONDS = 6.0


def _utterances(dialog: str, turns):
    for i, (who, emo) in enumerate(turns):
        yield f"{dialog}_{who}", emo, 0.2 + i, 1.0 + i  # [start, end) in seconds


@pytest.fixture(scope="module")
def iemocap_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("IEMOCAP_full_release")
    for session, (dialog, turns) in DIALOGS.items():
        base = root / f"Session{session}"
        make_clip(base / "dialog" / "avi" / "DivX" / f"{dialog}.avi", seconds=SECONDS, fps=10, size=(64, 32))
        evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for utt, emo, start, end in _utterances(dialog, turns):
            evaluation += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{emo}\t[2.5000, 2.5000, 2.5000]",
                           "C-E1:\tNeutral;\t()", ""]
            transcript.append(f"{utt} [{start:08.4f}-{end:08.4f}]: words of {utt}.")
            make_clip(base / "sentences" / "wav" / dialog / f"{utt}.wav", seconds=end - start)
        for sub, lines in (("EmoEvaluation", evaluation), ("transcriptions", transcript)):
            path = base / "dialog" / sub / f"{dialog}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    return root


def test_counts_and_four_class_mapping(iemocap_root):
    samples, dropped = read_iemocap(iemocap_root, labels=LABELS, sessions=[1, 2])
    assert dropped == {"fru": 1, "xxx": 1, "sur": 1}
    by_id = {s.id: s for s in samples}
    assert len(samples) == 6
    assert LABELS[by_id["Ses01F_impro01_M000"].label] == "happy"  # excited merged into happy
    assert LABELS[by_id["Ses01F_impro01_F001"].label] == "happy"
    assert [LABELS[by_id[f"Ses02M_script01_1_{w}"].label] for w in ("M000", "F000", "M001")] == ["angry", "sad", "neutral"]
    s = by_id["Ses02M_script01_1_F000"]
    assert (s.start, s.end) == (1.2, 2.0) and s.text == "words of Ses02M_script01_1_F000."
    assert s.speaker == "Ses02F" and s.fold == "2" and s.audio.endswith("Ses02M_script01_1/Ses02M_script01_1_F000.wav")
    assert s.video.endswith("Session2/dialog/avi/DivX/Ses02M_script01_1.avi")


def test_leave_one_session_out(iemocap_root):
    samples, _ = read_iemocap(iemocap_root, labels=LABELS, sessions=[1, 2])
    folds = make_folds(samples, val_fraction=0.2, num_folds=1, seed=0)
    assert [f.name for f in folds] == ["1", "2"]
    for fold in folds:
        assert {s.id[:5] for s in fold.val} == {f"Ses0{fold.name}"}
        assert f"Ses0{fold.name}" not in {s.id[:5] for s in fold.train}


def test_crop_side_rule():
    assert speaker_of("Ses01F_impro01_M013") == "M"
    assert crop_side("Ses01F_impro01_F000", "marked_left") == "left"  # F speaks, F wears the markers
    assert crop_side("Ses01F_impro01_M000", "marked_left") == "right"
    assert crop_side("Ses02M_script01_1_M000", "marked_left") == "left"
    assert crop_side("Ses02M_script01_1_M000", "marked_right") == "right"
    assert crop_side("Ses02M_script01_1_F000", "none") is None
    with pytest.raises(ValueError):
        speaker_of("Ses01F_impro01_X000")


def test_utterance_frames_come_from_its_window_and_half(iemocap_root, tiny_model):
    samples, _ = read_iemocap(iemocap_root, labels=LABELS, sessions=[2], speaker_side="marked_left")
    sample = next(s for s in samples if s.id == "Ses02M_script01_1_F000")  # [1.2, 2.0), the right half
    raw = load_raw(sample, tiny_model.processor, ["video", "audio", "text"])
    assert raw.frames.shape[1:] == (32, 32, 3)
    full = tiny_model.processor.decode(sample.video, start=sample.start, end=sample.end).frames
    assert np.array_equal(raw.frames, full[:, :, 32:])
    position = red_level_to_fraction(float(raw.frames[..., 0].mean())) * SECONDS
    assert sample.start - 0.3 < position < sample.end + 0.3  # the red ramp tells the time of the frames
    assert raw.audio.shape[0] == pytest.approx((sample.end - sample.start) * 16000, abs=400)


def test_missing_session_is_a_clear_error(tmp_path):
    from gia_mic.configuration import ConfigError

    with pytest.raises(ConfigError, match="Session1"):
        read_iemocap(tmp_path, labels=LABELS, sessions=[1])
