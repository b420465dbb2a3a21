"""Media paths stay inside their dataset's media folder.

A dataset names its videos and covers by paths relative to one folder (``--media``, the items file's folder,
or a MicroLens folder). Anything that resolves outside that folder — an absolute path, ``../``, a symlink
pointing elsewhere — is refused at import (``confine`` raises, naming the file and line) and ignored where
media is read (``resolve_media`` returns None), so a shared dashboard never reads or serves a file the
dataset's owner did not put in its media folder.
"""
from __future__ import annotations

from pathlib import Path


class MediaEscape(ValueError):
    """A media path that points outside its media folder."""


def confine(root: str | Path, value: str) -> Path:
    """The resolved path of ``value`` under ``root`` (symlinks followed); MediaEscape when it leaves ``root``.

    The file need not exist: a missing file is the caller's warning, an escape is always an error."""
    text = str(value).strip()
    if "\x00" in text:
        raise MediaEscape("the path contains a NUL byte")
    path = Path(text)
    if path.is_absolute():
        raise MediaEscape(f"absolute path {text!r}; media paths must be relative to the media folder")
    base = Path(root).resolve()
    full = (base / path).resolve()
    if full != base and base not in full.parents:
        reason = "symlink" if ".." not in path.parts else "'..'"
        raise MediaEscape(f"path {text!r} leads outside the media folder {base} (via a {reason})")
    return full


def resolve_media(root: str | Path | None, value, must_exist: bool = True) -> str | None:
    """The media file for a stored path, or None (no path, outside ``root``, or missing when ``must_exist``).

    Defence in depth for readers (extraction, Explore): the importer already refused escapes, but a database
    written by an older version or by hand must not make a reader leave the media folder either."""
    if value is None or (isinstance(value, float) and value != value) or not str(value).strip() or root is None:
        return None
    try:
        full = confine(root, str(value))
    except MediaEscape:
        return None
    return str(full) if full.is_file() or not must_exist else None
