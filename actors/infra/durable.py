"""Private, durable files in the state directory: modes, ownership, directory fsync.

Everything the service keeps on disk (journal and its rotated files,
the webhook's private keys) is readable by us only. The rules, one place for all of
them (docs/architecture.md, "Files"):

* directories we own are mode **0700**, files **0600** (certificates may be 0644);
* files are *created* with their final mode (``os.open`` with a mode, then ``fchmod``
  when the umask took bits away), never created first and tightened later;
* at start, :func:`check_private` (called for every file of ours by
  :mod:`actors.infra.state_dir`) looks at what already exists: a directory or file that we
  own but that is too open is tightened, and a log line says what changed; one owned
  by someone else, or that is not a plain file/directory, is refused with
  :class:`StateFileError`, a one-line message the supervisor prints instead of a
  traceback (we never chown: a file of another user in our state dir is a
  configuration mistake or an attack, and either way not ours to adopt);
* after every rename (journal rotation, certificate writes) the
  directory is fsync'd with :func:`fsync_dir` (or :func:`replace_durably`), so the
  rename itself survives a power loss and not only the file's data.

These are plain functions, called by whichever thread owns the file (the supervisor's
main thread at start, any thread for the journal); they raise ``OSError`` (or
``StateFileError``) and leave it to the caller to decide what a failure means.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("dockmirror.files")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Certificates are public; anything else of ours is 0600.
CERT_MODE = 0o644


class StateFileError(Exception):
    """A state file or directory we cannot use safely; ``str()`` is one clear line."""


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` so that renames and creations in it are durable.

    Raises ``OSError``. Filesystems that cannot fsync a directory (``EINVAL``, e.g.
    some network filesystems) are accepted silently: there is nothing better to do.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # directory fsync not supported here
            raise
    finally:
        os.close(fd)


def replace_durably(source: Path, target: Path) -> None:
    """``os.replace(source, target)``, then fsync the target's directory. Raises OSError."""
    os.replace(source, target)
    fsync_dir(target.parent)


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700 regardless of umask.

    Only the directories created here get 0700; existing ones are left to
    :func:`check_private`. Raises ``OSError``.
    """
    missing: list[Path] = []
    current = Path(directory)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue  # created concurrently; check_private judges it
        os.chmod(path, DIR_MODE)  # the umask may have taken bits away


def open_private(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """Open ``path``, creating it with exactly ``mode`` if missing; returns the fd.

    A file this call creates is fchmod'ed to ``mode`` (the umask can only take bits
    away, and e.g. a umask of 0o200 would leave a 0400 file that we could not append
    to after a restart). An existing file keeps its mode: :func:`check_private` judged
    it at start. Raises ``OSError``.
    """
    base = (flags & ~os.O_CREAT & ~os.O_EXCL) | os.O_CLOEXEC
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, base)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_private_append(path: Path) -> BinaryIO:
    """An unbuffered binary append handle on ``path`` (created 0600). Raises OSError."""
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    return os.fdopen(fd, "ab", buffering=0)


def _describe(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


def check_private(path: Path, *, is_dir: bool, max_mode: int | None = None) -> str | None:
    """Check an existing state file or directory; tighten it when we own it.

    ``max_mode`` is the loosest mode accepted (default 0700 for directories, 0600 for
    files); bits beyond it are removed. Returns a sentence describing the fix-up (the
    caller logs it), or None when nothing changed or ``path`` does not exist. Raises
    :class:`StateFileError` when the path is not ours or not what it should be.
    Directories may be symbolic links (the target is judged); files may not, because a
    link would let the service write wherever the link points.
    """
    limit = max_mode if max_mode is not None else (DIR_MODE if is_dir else FILE_MODE)
    try:
        st = os.stat(path) if is_dir else os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot check {path}: {exc.strerror or exc}") from exc
    what = "directory" if is_dir else "file"
    if is_dir and not stat.S_ISDIR(st.st_mode):
        raise StateFileError(f"{path} must be a directory, but it is not")
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise StateFileError(f"{path} must be a regular file (not a link or special file)")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise StateFileError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this service (uid {uid}); "
            f"chown it or choose another --state-dir"
        )
    mode = stat.S_IMODE(st.st_mode)
    wanted = mode & limit
    if is_dir:
        wanted |= 0o700  # we must be able to list, create and rename in it
    elif wanted & 0o600 != 0o600:
        wanted |= 0o600  # and read and append to our own files
    if wanted == mode:
        return None
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        raise StateFileError(
            f"{what} {path} has mode {_describe(mode)} and cannot be changed to "
            f"{wanted:04o}: {exc.strerror or exc}"
        ) from exc
    return f"{what} {path} had mode {_describe(mode)}; changed to {wanted:04o}"
