"""IEMOCAP reader for the official release layout (the corpus is licensed: pass a local path).

    SessionN/dialog/avi/DivX/<dialog>.avi               both actors side by side
    SessionN/dialog/transcriptions/<dialog>.txt         ``<utt> [start-end]: text``
    SessionN/dialog/EmoEvaluation/<dialog>.txt          ``[start - end] <TAB> <utt> <TAB> <emo> <TAB> [v, a, d]``
    SessionN/sentences/wav/<dialog>/<utt>.wav           one file per utterance

Four classes (``SPEC.md`` §7): neu -> neutral, hap and exc -> happy, ang -> angry,
sad -> sad; 5,531 utterances on the real corpus. Each utterance's frames are cut from the
dialog video by its timestamps and cropped to the speaker's half (``iemocap_speaker_side``).
One fold per session (leave-one-session-out): the session is the fold's test set, and
``train.run.selection_split`` holds speakers of the training sessions out to choose the epoch.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from gia_mic.configuration import ConfigError
from train.data import Sample, map_label

logger = logging.getLogger(__name__)

IEMOCAP_LABELS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_EVAL_LINE = re.compile(r"^\[(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\]\s+(\S+)\s+(\S+)")
_TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[\d.]+-[\d.]+\]:\s*(.*)$")


def speaker_of(utterance: str) -> str:
    """Gender letter of an utterance id's speaker: ``Ses01F_impro01_M003`` -> ``"M"``."""
    letter = utterance.rsplit("_", 1)[-1][:1].upper()
    if letter not in ("F", "M"):
        raise ValueError(f"IEMOCAP utterance id {utterance!r} does not end in _F### or _M###")
    return letter


def crop_side(utterance: str, rule: str) -> str | None:
    """The half of the dialog video showing the utterance's speaker.

    The dialog's session letter (``Ses01F...`` -> F) names the actor wearing the
    motion-capture markers. ``marked_left``: that actor is on the left half;
    ``marked_right``: on the right; ``none``: no crop.
    """
    if rule == "none":
        return None
    marked = speaker_of(utterance) == utterance[5:6].upper()
    left = marked if rule == "marked_left" else not marked
    return "left" if left else "right"


def _transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def _dialog_samples(session_dir: Path, eval_file: Path, session: int, *, labels: Sequence[str],
                    label_map: dict[str, str], side: str, dropped: Counter) -> list[Sample]:
    dialog = eval_file.stem
    video = session_dir / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
    texts = _transcripts(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt")
    samples = []
    for line in eval_file.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _EVAL_LINE.match(line.strip())
        if not match:
            continue
        start, end, utt, emotion = float(match.group(1)), float(match.group(2)), match.group(3), match.group(4)
        label = map_label(emotion, labels, {**IEMOCAP_LABELS, **label_map})
        if label is None:
            dropped[emotion] += 1
            continue
        wav = session_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
        samples.append(Sample(
            id=utt, label=label, speaker=f"Ses{session:02d}{speaker_of(utt)}",
            video=str(video) if video.is_file() else None, audio=str(wav) if wav.is_file() else None,
            text=texts.get(utt) or None, start=start, end=end, crop=crop_side(utt, side), fold=str(session),
        ))
    return samples


def read_iemocap(root: str | Path, *, labels: Sequence[str], label_map: dict[str, str] | None = None,
                 sessions: Sequence[int] = (1, 2, 3, 4, 5), speaker_side: str = "marked_left") -> tuple[list[Sample], Counter]:
    """Reads the utterances of the given sessions.

    Args:
        root: The release folder (holding ``Session1`` .. ``Session5``).
        labels: The model's labels.
        label_map: Extra raw-code -> label entries on top of the 4-class mapping.
        sessions: Sessions to read; each becomes fold ``"<n>"``.
        speaker_side: See ``crop_side``.

    Returns:
        The samples and, per raw emotion code, how many utterances were dropped.

    Raises:
        ConfigError: ``root`` or a session folder is missing.
    """
    root = Path(root).expanduser()
    samples: list[Sample] = []
    dropped: Counter = Counter()
    for session in sessions:
        session_dir = root / f"Session{session}"
        eval_dir = session_dir / "dialog" / "EmoEvaluation"
        if not eval_dir.is_dir():
            raise ConfigError(f"data.root: {eval_dir} not found; data.root must be the IEMOCAP release folder "
                              "that holds Session1..Session5")
        for eval_file in sorted(eval_dir.glob("*.txt")):
            samples += _dialog_samples(session_dir, eval_file, session, labels=labels, label_map=label_map or {},
                                       side=speaker_side, dropped=dropped)
    missing_video = sum(s.video is None for s in samples)
    if missing_video:
        logger.warning("IEMOCAP: %d utterances have no dialog video (frames treated as missing)", missing_video)
    logger.info("IEMOCAP: %d utterances kept, %d dropped (%s)", len(samples), sum(dropped.values()), dict(dropped))
    return samples, dropped
