"""File-system helpers that work for local paths and for any ``tf.io.gfile`` scheme (gs://, ram://).

Local paths use the standard library directly (fast, and worker processes that only read local
images never import TensorFlow); paths with a scheme go through ``tf.io.gfile``. Writes that other
processes might observe are atomic: a temporary name in the same folder, then a rename.
"""
from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
import uuid
from typing import Iterator, List, Sequence

from common.errors import UserError

TMP_MARK = ".tmp-"


def is_remote(path: str) -> bool:
    """True for paths with a URL scheme such as ``gs://bucket/x`` or ``ram://x``."""
    return "://" in str(path)


def _gfile():
    import tensorflow as tf  # imported lazily: only remote paths need it

    return tf.io.gfile


def undecodable(name: str) -> bool:
    """Whether a file name (as ``os.listdir`` gives it) holds bytes that are not UTF-8: such a name
    cannot be written to the manifest or a CSV file, or matched with an annotation."""
    return any("\udc80" <= char <= "\udcff" for char in name)


def printable_name(name: str) -> str:
    """``name`` with its non-UTF-8 bytes written as ``\\xNN`` (what a report can show)."""
    if not undecodable(name):
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def join(base: str, *parts: str) -> str:
    """Join path parts; remote paths always use ``/``."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
    return exists(path) and not isdir(path)


def listdir(path: str) -> List[str]:
    """Sorted entry names of a folder (no trailing slashes)."""
    if is_remote(path):
        names = [name.rstrip("/") for name in _gfile().listdir(path)]
    else:
        names = os.listdir(path)
    return sorted(names)


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def size(path: str) -> int:
    return _gfile().stat(path).length if is_remote(path) else os.path.getsize(path)


def remove(path: str) -> None:
    """Remove a file if it exists."""
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().remove(path)
    elif os.path.exists(path):
        os.remove(path)


def remove_tree(path: str) -> None:
    """Remove a folder and everything below it, if it exists."""
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().rmtree(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def rename(source: str, target: str) -> None:
    """Rename ``source`` to ``target``, replacing ``target`` if it exists."""
    if is_remote(source) or is_remote(target):
        _gfile().rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        with _gfile().GFile(path, "rb") as handle:
            return handle.read()
    with open(path, "rb") as handle:
        return handle.read()


def read_text(path: str, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def open_file(path: str, mode: str = "rb"):
    """An open file object for ``path`` (``tf.io.gfile.GFile`` for remote paths)."""
    if is_remote(path):
        return _gfile().GFile(path, mode)
    return open(path, mode)


def temporary_name(path: str) -> str:
    """A unique sibling name for ``path``, recognisable as temporary by :data:`TMP_MARK`."""
    return f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one."""
    tmp = temporary_name(path)
    with open_file(tmp, "wb") as handle:
        handle.write(data)
    rename(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def walk_files(root: str) -> Iterator[str]:
    """Yield every file below ``root`` as a ``/``-separated path relative to ``root``, sorted."""
    if is_remote(root):
        for directory, _subdirs, files in _gfile().walk(root):
            relative = directory[len(root):].strip("/")
            for name in files:
                yield posixpath.join(relative, name) if relative else name
        return
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        relative = os.path.relpath(directory, root)
        for name in sorted(files):
            yield name if relative == "." else posixpath.join(relative.replace(os.sep, "/"), name)


def remove_temporaries(folder: str) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder``; return how many were removed."""
    if not isdir(folder):
        return 0
    removed = 0
    for name in listdir(folder):
        if TMP_MARK in name:
            remove(join(folder, name))
            removed += 1
    return removed


def foreign_entries(folder: str, own: Sequence[str]) -> List[str]:
    """The entries of ``folder`` (none when it is missing) that match none of the ``own`` name
    patterns (``fnmatch``: what a command writes there); hidden temporaries count as its own."""
    if not isdir(folder):
        return []
    return sorted(name for name in listdir(folder)
                  if not any(fnmatch.fnmatchcase(name, pattern) for pattern in own) and TMP_MARK not in name)


def refuse_foreign(folder: str, own: Sequence[str], flag: str, command: str) -> None:
    """One line when ``folder`` holds entries that ``command`` does not write (nothing is touched)."""
    foreign = foreign_entries(folder, own)
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
        raise UserError(f"{flag} {folder} holds files that {command} does not write ({shown}); choose a new or "
                        "empty folder (nothing was changed)")


def ensure_writable_folder(folder: str, flag: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any long work.

    A regular file in the way, a read-only or impossible path ends in one :class:`UserError` naming
    ``flag`` (e.g. ``--out``) instead of an ``OSError`` hours later.
    """
    blocking = folder
    while not is_remote(blocking) and not os.path.exists(blocking) and os.path.dirname(blocking) != blocking:
        blocking = os.path.dirname(blocking)  # the nearest part of the path that exists
    if exists(blocking) and not isdir(blocking):
        raise UserError(f"{flag}: {blocking} is a file, not a folder")
    try:
        makedirs(folder)
        probe = temporary_name(join(folder, ".write-test"))
        with open_file(probe, "wb") as handle:
            handle.write(b"")
        remove(probe)
    except Exception as error:  # OSError locally; TensorFlow's errors for gs:// and other schemes
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0][:200] or type(error).__name__
        raise UserError(f"{flag}: cannot write to {folder} ({reason}); choose a folder you can write to") from None
