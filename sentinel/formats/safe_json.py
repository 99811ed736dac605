"""Safe JSON files: atomic writes, and reads of files a hostile user may have planted.

Every JSON file run-sentinel keeps (the spool's records, the daemon's
outbox, mute and resend requests, its state files) is read and written
through this module; the formats themselves live with their owners
(``sentinel.formats.spool``, ``sentinel.delivery.outbox``, ...). Stdlib only: the training
process imports it.

Writes are atomic (``write_json``, ``write_bytes``): a hidden temporary file in the same
directory, ``.<name>.<pid>.<8 hex>.tmp``, opened ``O_EXCL|O_NOFOLLOW`` at mode
0600, then ``rename``; a reader sees the old file or the new one, never half
of one. ``durable=True`` fsyncs the file and its directory too. A file is
compact UTF-8 JSON and never holds a NaN or an infinity.

Reads never follow a symlink (the daemon reads relative to directory fds,
``open_dir`` + ``read_json(name, dir_fd=)``, so not even a swapped directory
leads it elsewhere), never open anything but a regular file (``O_PATH``
first, so a FIFO cannot block and a tty cannot become the reader's
controlling terminal), cap the bytes read (``MAX_FILE_BYTES``), refuse
NaN/Infinity and nesting deeper than ``MAX_JSON_DEPTH``, and raise
``SpoolFormatError`` for anything wrong with the file other than its absence
(FileNotFoundError).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Mapping, Optional, Union

MAX_FILE_BYTES = 256 * 1024
# Deeper JSON than this is no record of ours; refusing it keeps every later
# recursive walk (dataclasses.asdict, json.dumps) far from the recursion limit.
MAX_JSON_DEPTH = 32


class SpoolFormatError(ValueError):
    """A spool file is unreadable, malformed, oversized or of another version."""



def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing one must be a real
    directory, not a symlink."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory (or a symlink)", str(path))


def write_json(path: Path, data: Mapping[str, Any], *, durable: bool = False, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``: temporary file + rename.

    ``durable`` also fsyncs file and directory, for records that must survive
    a power cut (the final record, the daemon's outbox). ``mode`` is for the
    few files others must read (the daemon's liveness file in a shared spool).
    """
    write_bytes(path, encode_json(data), durable=durable, mode=mode)


def write_bytes(path: Path, payload: bytes, *, durable: bool = False, mode: int = 0o600) -> None:
    """``write_json`` of bytes already encoded (a caller that sizes them first)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)  # exact, whatever the umask
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def encode_json(data: Mapping[str, Any]) -> bytes:
    """``data`` as compact UTF-8 JSON. Never a NaN or infinity (not JSON;
    ValueError). A string no UTF-8 can hold (a lone surrogate from an
    undecodable file name) is written as a ``\\u`` escape rather than refused."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")


def load_json_bounded(raw: Union[bytes, str], max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode untrusted JSON: UTF-8 only, no NaN or infinities (Python's json
    takes them by default, and one NaN time disables every comparison made
    with it), nesting at most ``max_depth`` deep. SpoolFormatError otherwise."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise SpoolFormatError(f"not valid JSON (nested deeper than {max_depth})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpoolFormatError(f"not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if text.count("[") + text.count("{") > max_depth and _depth(data) > max_depth:
        raise SpoolFormatError(f"not valid JSON (nested deeper than {max_depth})")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(data: Any) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    deepest = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return deepest


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_untrusted(path: Union[str, Path], dir_fd: Optional[int] = None) -> int:
    """A read-only descriptor of a regular file someone else may have planted.

    Never through a symlink, never blocking, and never an open of anything
    but a regular file: the name is first opened ``O_PATH`` (no driver's
    ``open`` runs, so a terminal cannot become the caller's controlling tty, a
    watchdog cannot be armed, a FIFO cannot block), its type is checked on
    that descriptor, and only then is the very inode opened for reading,
    through ``/proc/self/fd`` (``O_NOCTTY|O_NONBLOCK`` all the same).
    FileNotFoundError if absent, SpoolFormatError for anything else.
    """
    try:
        handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise SpoolFormatError(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(handle)
        if stat.S_ISLNK(st.st_mode):
            raise SpoolFormatError("is a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise SpoolFormatError("not a regular file")
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return os.open(f"/proc/self/fd/{handle}", flags)
        except FileNotFoundError:  # no /proc: open the name again, and make sure it is the same file
            fd = os.open(path, flags | os.O_NOFOLLOW, dir_fd=dir_fd)
            again = os.fstat(fd)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)
                raise SpoolFormatError("replaced while being opened") from None
            return fd
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise SpoolFormatError(f"cannot open: {exc.strerror}") from None
    finally:
        os.close(handle)


def read_json(path: Union[Path, str], max_bytes: int = MAX_FILE_BYTES, *,
              dir_fd: Optional[int] = None) -> tuple[dict[str, Any], os.stat_result]:
    """Read one spool file safely; return the object and the file's stat.

    Never follows a symlink, never blocks on a FIFO, never reads more than
    ``max_bytes``. With ``dir_fd``, ``path`` is a name in that directory (how
    the daemon reads: see ``open_dir``). Raises FileNotFoundError if absent,
    SpoolFormatError for anything else that is wrong with it.
    """
    fd = open_untrusted(path, dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpoolFormatError("not a regular file")
        if st.st_size > max_bytes:
            raise SpoolFormatError(f"too large ({st.st_size} bytes, limit {max_bytes})")
        chunks, remaining = [], max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        raw = b"".join(chunks)
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise SpoolFormatError(f"too large (over {max_bytes} bytes)")
    data = load_json_bounded(raw)
    if not isinstance(data, dict):
        raise SpoolFormatError("not a JSON object")
    return data, st


DirId = tuple[int, int]  # (st_dev, st_ino): which directory, whatever its path names now


def dir_id(st: os.stat_result) -> DirId:
    return (st.st_dev, st.st_ino)


def open_dir(name: Union[Path, str], dir_fd: Optional[int] = None) -> int:
    """An fd of the directory ``name`` (in ``dir_fd`` if given), never through a
    symlink as its last component. A reader that then works only relative to
    this fd (``read_json(..., dir_fd=)``, ``os.unlink(..., dir_fd=)``) stays in
    that very directory however its path is swapped meanwhile. Raises
    FileNotFoundError if absent, NotADirectoryError for a symlink or a file."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotADirectoryError(errno.ENOTDIR, "a symlink (never followed)", str(name)) from None
        raise
