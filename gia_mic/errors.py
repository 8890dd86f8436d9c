"""The library's error types: one base class, one subclass per kind of problem.

Every one of them is a problem with what the user gave (a clip, a transcript, a manifest,
a config, a checkpoint), never a bug: its message is one line that names the file or field
and, where it can, the fix. ``USER_ERRORS`` is what the CLI and the app catch and show as
such; anything else is a fault of ours and keeps its traceback.
"""

from __future__ import annotations


class GiaMicError(Exception):
    """A problem with the user's input; the message names it and says how to fix it."""


class ConfigError(GiaMicError, ValueError):
    """A config value or field is invalid; the message names it."""


class InputError(GiaMicError, ValueError):
    """An input (transcript, waveform, modality set, manifest) is unusable; the message says why."""


class MediaError(GiaMicError, ValueError):
    """Bad or unreadable media; the message names the file and the problem."""


class CheckpointError(GiaMicError, OSError):
    """A checkpoint cannot be found, downloaded or read; the message says how to fix it."""


class EncoderLoadError(GiaMicError, OSError):
    """An encoder (or its processor) could not be loaded; the message says how to fix it."""


USER_ERRORS: tuple[type[BaseException], ...] = (GiaMicError, FileNotFoundError)
"""Exceptions that are the user's to fix: shown as one line (CLI exit 2, the app's "Input problem")."""
