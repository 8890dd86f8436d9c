"""The one manifest reader: a CSV that lists clips (paths relative to a root) and their columns.

Used by ``gia-mic evaluate`` and by the trainer's corpus reader. A manifest is untrusted
input: a UTF-8 byte-order mark is accepted, a row that is not valid UTF-8 or whose path
leaves the root is refused *by line* (the other rows go on), and the file's size is bounded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from gia_mic.errors import InputError
from gia_mic.media import is_audio_file

MAX_MANIFEST_BYTES = 512 * 1024 * 1024


@dataclass
class ManifestRow:
    """One data row.

    Attributes:
        line: Line of the file where the row starts (the header is line 1).
        fields: Column (lower-cased) -> stripped value.
        video: The clip's video file (``path`` or ``video`` column), resolved under the root.
        audio: The clip's audio file (``audio`` column, or an audio-only ``path``).
        media: The ``path`` column's file (a video with sound, or an audio file), if given.
        error: Why the row is refused (then it must not be read), else ``None``.
    """

    line: int
    fields: dict[str, str] = field(default_factory=dict)
    video: Path | None = None
    audio: Path | None = None
    media: Path | None = None
    error: str | None = None

    def get(self, *names: str) -> str:
        """The first non-empty value among the columns ``names`` ("" if none)."""
        for name in names:
            value = self.fields.get(name, "")
            if value:
                return value
        return ""


def _text(path: Path) -> str:
    if path.is_dir():
        raise InputError(f"manifest {path} is a directory, not a CSV file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"manifest not found: {path}") from None
    if size > MAX_MANIFEST_BYTES:
        raise InputError(f"manifest {path} is {size / 2**20:.0f} MB; the limit is {MAX_MANIFEST_BYTES >> 20} MB")
    # undecodable bytes become lone surrogates, refused per row below (with their line number)
    return path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _undecodable(values: list[str]) -> bool:
    return any("\udc80" <= ch <= "\udcff" for v in values for ch in v)


def _resolve(value: str, base: Path, base_real: Path, allow_outside: bool) -> tuple[Path, str | None]:
    file = Path(value).expanduser()
    file = file if file.is_absolute() else base / file
    if not allow_outside:
        real = Path(file).resolve()
        if real != base_real and base_real not in real.parents:
            return file, (f"{value!r} resolves outside the root {base} (pass --allow-outside-root to read "
                          "files there)")
    return file, None


def read_manifest(path: str | Path, *, root: str | Path | None = None, allow_outside_root: bool = False,
                  required: tuple[tuple[str, ...], ...] = ()) -> list[ManifestRow]:
    """Reads a manifest CSV.

    Args:
        path: The CSV file. Column names are case-insensitive.
        root: Folder that relative paths are under (default: the CSV's folder).
        allow_outside_root: Read paths that resolve outside ``root`` (absolute paths, ``..``,
            symbolic links); otherwise such rows are refused with their line number.
        required: Column groups; each group needs at least one of its names in the header,
            e.g. ``(("label", "emotion"), ("path", "video", "audio"))``.

    Returns:
        Every data row, refused ones with ``error`` set.

    Raises:
        InputError: the file is missing, a directory, too large, or lacks required columns.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        header = []
    except csv.Error as err:
        raise InputError(f"manifest {path} line 1: {err}") from None
    for group in required:
        if not set(group) & set(header):
            wanted = "; ".join(" or ".join(g) for g in required)
            raise InputError(f"manifest {path} needs the columns {wanted}; it has {header}")
    base = Path(root) if root else path.parent
    base_real = base.resolve()
    rows: list[ManifestRow] = []
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise InputError(f"manifest {path} line {start}: {err}") from None
        row = ManifestRow(line=start)
        start = reader.line_num + 1
        if not any(v.strip() for v in values):
            continue  # blank line
        rows.append(row)
        if _undecodable(values):
            row.error = "not valid UTF-8 (re-save the manifest as UTF-8)"
            continue
        row.fields = {h: v.strip() for h, v in zip(header, values)}
        for key in ("path", "video", "audio"):
            value = row.fields.get(key, "")
            if not value:
                continue
            file, problem = _resolve(value, base, base_real, allow_outside_root)
            row.error = row.error or problem
            if key == "path":
                row.media = file
            if key == "audio" or is_audio_file(file):
                row.audio = file
            elif key == "video" or row.video is None:
                row.video = file
    return rows
