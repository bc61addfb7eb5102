"""An exclusive lock file in an output folder, so two processes never write the same folder at once.

The file holds the owner's process id, host and start time. A second process is refused with one
line saying who holds the folder. A lock whose owner is gone (killed, the machine rebooted) is stale
and taken over; on another host or a bucket (``gs://``) that cannot be checked, so the message says
how to remove it by hand.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket

from common import fs
from common.errors import UserError

LOG = logging.getLogger("common.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _owner(path: str) -> dict:
    try:
        owner = json.loads(fs.read_text(path))
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def _stale(owner: dict) -> bool:
    """True when the owner is certainly gone: a process of this host that no longer runs."""
    return owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
        and not _alive(owner["pid"])


def _create(path: str, record: dict) -> bool:
    """Create the lock file unless it exists (atomically for local paths)."""
    if fs.is_remote(path):
        if fs.exists(path):
            return False
        fs.write_text_atomic(path, json.dumps(record))
        return True
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(record))
    return True


@contextlib.contextmanager
def folder_lock(folder: str, what: str, name: str = ".lock"):
    """Hold ``folder/name`` while the block runs; refuse when another live process holds it."""
    path = fs.join(folder, name)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()}
    for _ in range(2):
        if _create(path, record):
            break
        owner = _owner(path)
        if not _stale(owner):
            holder = (f"process {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"
                      if owner else "a process that left no details")
            raise UserError(f"--out {folder} is being written by another {what} ({holder}); wait for it to finish "
                            f"or stop it, then run the command again (if no {what} is running, delete {path})")
        LOG.info("taking over %s: process %s is gone", path, owner.get("pid"))
        fs.remove(path)
    else:
        raise UserError(f"--out {folder}: could not take the lock {path}; run the command again")
    try:
        yield
    finally:
        if _owner(path).get("pid") == record["pid"]:
            fs.remove(path)
