"""Transcript text checks shared by the torch pipeline and the torch-free ONNX runtime.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from gia_mic.errors import InputError


def clean_text(text: str | bytes | None) -> str | None:
    """Validates a transcript: UTF-8, whitespace-collapsed; ``None`` when empty.

    Raises:
        InputError: on bytes that are not UTF-8 or a string holding undecodable bytes.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"the transcript is not valid UTF-8 (byte {err.start}): re-save it as UTF-8") from None
    if not isinstance(text, str):
        raise InputError(f"the transcript must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the transcript is not valid UTF-8 (it holds undecodable bytes): re-save it as UTF-8") from None
    text = " ".join(text.split())
    return text or None
