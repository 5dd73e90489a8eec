"""Low-level helpers for crash-safe HDF5 writing: an advisory writer lock and SWMR flag recovery.

Why these exist
---------------
The spike store is written in HDF5 *single-writer/multiple-reader* (SWMR) mode,
whose ordered metadata flushes keep the file consistent at every instant, so a
``SIGKILL`` never corrupts what was flushed.  Two HDF5 behaviours need help:

* In SWMR mode HDF5 drops its own ``flock`` after marking the superblock, so a
  second writer is only noticed through the superblock's *status flags*, which
  a killed writer also leaves behind.  We therefore hold our own ``flock`` on
  the file for the writer's lifetime: the kernel releases it when the process
  dies, which tells a live writer (lock held) from a crashed one (flags set,
  no lock).
* After a crash the status flags make HDF5 refuse a normal open ("file is
  already open for write ... use h5clear").  :func:`clear_status_flags` does
  what ``h5clear -s -i`` does: it zeroes the flags, raises the stored
  end-of-file address to the real file size, and rewrites the superblock
  checksum (Jenkins lookup3, as HDF5's ``H5_checksum_lookup3``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from ..errors import StoreFormatError, StoreLockedError

__all__ = [
    "WriterLock",
    "clear_status_flags",
    "extend_to_stored_eof",
    "held_by_a_writer",
    "lookup3",
    "is_flag_error",
    "is_lock_error",
    "is_disk_full",
    "is_truncation_error",
]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata.

    Examples
    --------
    >>> hex(lookup3(b""))
    '0xdeadbeef'
    """
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & _M
    pos = 0
    while n > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & _M
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & _M
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & _M
        a = (a - c) & _M; a ^= _rot(c, 4); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 6); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 8); b = (b + a) & _M  # noqa: E702
        a = (a - c) & _M; a ^= _rot(c, 16); c = (c + b) & _M  # noqa: E702
        b = (b - a) & _M; b ^= _rot(a, 19); a = (a + c) & _M  # noqa: E702
        c = (c - b) & _M; c ^= _rot(b, 4); b = (b + a) & _M  # noqa: E702
        n -= 12
        pos += 12
    if n == 0:
        return c
    tail = data[pos:] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c ^= b; c = (c - _rot(b, 14)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _M  # noqa: E702
    return c


def is_flag_error(err: BaseException) -> bool:
    """True for HDF5's "file is already open for write" (status flags set)."""
    text = str(err).lower()
    return "already open for write" in text or "h5clear" in text


def is_lock_error(err: BaseException) -> bool:
    """True for HDF5's "unable to lock file" (another process holds it)."""
    text = str(err).lower()
    return "lock" in text and ("errno = 11" in text or "unable to lock" in text or "resource temporarily" in text)


#: errno values that mean "the disk (or the process's file-size limit, or the quota) is full"
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(err: BaseException) -> bool:
    """True for a write that failed for lack of space: ENOSPC, EFBIG (file-size limit) or EDQUOT.

    HDF5 reports these inside the text of an ``OSError`` or ``RuntimeError``
    (``errno = 28``), so the text is checked as well as ``err.errno``.
    """
    if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
        return True
    text = str(err)
    return any(f"errno = {n}," in text for n in _FULL_ERRNOS) or any(
        s in text for s in ("No space left on device", "File too large", "Disk quota exceeded")
    )


def is_truncation_error(err: BaseException) -> bool:
    """True for HDF5's "truncated file: eof = ..., stored_eof = ..." on opening."""
    return "truncated file" in str(err).lower()


def _superblock(fh: Any, p: Path) -> tuple[bytearray, int, int]:
    """The superblock's first 64 bytes, size of offsets, and body length; checksum verified."""
    head = bytearray(fh.read(64))
    if head[:8] != _SIGNATURE:
        raise StoreFormatError(f"'{p}': no HDF5 signature at offset 0; cannot clear the writer flags (try h5clear -s)")
    version, n_off = head[8], head[9]
    if version not in (2, 3) or n_off not in (4, 8):
        raise StoreFormatError(f"'{p}': superblock version {version} has no status flags to clear")
    body_len = 12 + 4 * n_off
    stored = int.from_bytes(head[body_len : body_len + 4], "little")
    if lookup3(bytes(head[:body_len])) != stored:
        raise StoreFormatError(f"'{p}': superblock checksum does not verify; the file header is damaged")
    return head, n_off, body_len


def extend_to_stored_eof(path: str | os.PathLike[str]) -> bool:
    """Give back to a file the tail that a failed write (disk full) never put on disk.

    When the disk fills while HDF5 flushes, the superblock may already record
    an end-of-file address past the bytes that reached the disk, and HDF5 then
    refuses the file as truncated although every batch counted in
    ``/progress`` lies before that point.  Extending the file with zeros (a
    sparse hole: no data blocks are needed) to the recorded address makes it
    open again; the zeros are only the space of the batch that failed.

    Returns
    -------
    bool
        True if the file was extended; False if it was not short.

    Raises
    ------
    StoreFormatError
        The superblock is not one we can validate.
    OSError
        The file cannot be extended (e.g. still under a file-size limit).
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head, n_off, _ = _superblock(fh, p)
    eof_at = 12 + 2 * n_off
    eof = int.from_bytes(head[eof_at : eof_at + n_off], "little")
    if eof <= size:
        return False
    os.truncate(p, eof)
    return True


def clear_status_flags(path: str | os.PathLike[str]) -> bool:
    """Clear the writer status flags a killed SWMR writer left in the superblock.

    Parameters
    ----------
    path : str or path-like
        An HDF5 file with a version 2 or 3 superblock at offset 0.

    Returns
    -------
    bool
        True if flags were set and are now cleared; False if there was nothing to do.

    Raises
    ------
    StoreFormatError
        If the superblock is not where or what we expect, or its checksum does
        not verify (we never rewrite a superblock we cannot validate).
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        head, n_off, body_len = _superblock(fh, p)
        if head[11] == 0:
            return False
        head[11] = 0
        # Data flushed after the last superblock write may lie past the stored
        # end-of-file address; raising it to the real size keeps it reachable.
        eof_at = 12 + 2 * n_off
        eof = int.from_bytes(head[eof_at : eof_at + n_off], "little")
        head[eof_at : eof_at + n_off] = max(eof, size).to_bytes(n_off, "little")
        body = bytes(head[:body_len])
        fh.seek(0)
        fh.write(body + lookup3(body).to_bytes(4, "little"))
        fh.flush()
        os.fsync(fh.fileno())
    return True


#: descriptors of the locks this process holds; a forked child closes its copies at once,
#: so a worker process (or an orphan of a killed run) never keeps a store locked
_HELD: set[int] = set()


def _forget_locks_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)  # closing a duplicate does not unlock the parent's descriptor
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def held_by_a_writer(path: str | os.PathLike[str]) -> bool:
    """Whether some process holds a ``flock`` on ``path``, found without taking one.

    Reads Linux's ``/proc/locks``, so a reader never competes with a writer for
    the lock; elsewhere it answers True (assume a writer: do not repair).
    """
    try:
        text = Path("/proc/locks").read_text()
        st = os.stat(path)
    except OSError:
        return True
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK":
            try:
                maj, mnr, ino = parts[5].split(":")
                if (int(maj, 16), int(mnr, 16), int(ino)) == want:
                    return True
            except ValueError:
                continue
    return False


class WriterLock:
    """An exclusive, non-blocking ``flock`` on a file, held by one writer.

    The kernel drops the lock when the holder dies, so a lock that can be
    taken means no live writer.  Separate ``open()`` calls conflict even in
    one process, so two handles on one store are caught too.
    """

    def __init__(self, path: str | os.PathLike[str], *, what: str = "spike store") -> None:
        self.path = Path(path)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # no flock (Windows): HDF5's own locking is all there is
            return
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self._fd)
            self._fd = None
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StoreLockedError(
                    f"{what} '{self.path}' is being written by another process or handle; "
                    "wait for that writer to finish (or stop it), then run again with --resume"
                ) from err
            raise
        _HELD.add(self._fd)

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                _HELD.discard(self._fd)
                os.close(self._fd)
                self._fd = None

    @staticmethod
    def probe(path: str | os.PathLike[str], *, what: str = "spike store") -> None:
        """Raise :class:`StoreLockedError` if a live writer holds ``path``."""
        if Path(path).exists():
            WriterLock(path, what=what).release()
