"""Listing and copying the entries of an untrusted zip or folder, with every archive-level check done first.

Nothing is extracted before the whole listing passed: a path that leaves the folder (``../x``, ``/x``, ``C:x``), a
link (a symlink or hard link; in a zip, its Unix mode in the external attributes), a device or FIFO, an encrypted
entry, a repeated name, and the zip-bomb limits (entry count read from the end record before the central directory
is parsed, then the total declared size, per-entry and whole-archive compression ratios). Copies read at most the
declared bytes; a folder's files are opened relative to their parent folder's descriptor without following links,
so a file swapped for a link after the listing is refused too.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from benchmark.leaderboard.limits import MIB, Limits
from benchmark.leaderboard.problems import Problems, shown

CHUNK = 1 * MIB
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty zip
# everything zipfile (and zlib under it) raises on a damaged or hostile archive
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    UnicodeError,
    OverflowError,
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class Entry:
    """One file or folder of the archive: its relative path ('/'-separated) and its uncompressed size."""

    name: str
    size: int
    is_dir: bool


def path_problem(name: str, max_depth: int) -> str | None:
    """Why ``name`` (an entry's path) could write outside the extraction folder or is no portable path."""
    if not name:
        return "empty name"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return "name is not valid UTF-8"
    if _UNSAFE_CHARS.search(name):
        return "name holds a control character or a backslash (not a portable path)"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path (it would write outside the folder)"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' path component"
    if len(parts) > max_depth:
        return f"{len(parts)} levels deep (at most {max_depth})"
    if any(len(p.encode()) > 255 for p in parts):
        return "a path component over 255 bytes"
    return None


class ZipSource:
    """A zip archive: ``entries`` after every check passed, ``copy`` of one entry."""

    def __init__(self, path: Path, limits: Limits, problems: Problems) -> None:
        self.path = path
        self.limits = limits
        self.entries: list[Entry] = []
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self._zip: zipfile.ZipFile | None = None
        size = path.stat().st_size
        if size > limits.max_archive_bytes:
            problems.add(path.name, f"{size} bytes, over the limit of {limits.max_archive_bytes}")
            return
        try:
            declared = declared_entry_count(path)
            if declared is not None and declared > limits.max_files:
                limit = limits.max_files
                problems.add(path.name, f"its end record declares {declared} entries, over the limit of {limit}")
                return
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except ZIP_ERRORS as err:
            problems.add(path.name, f"not a readable zip archive ({err_phrase(err)})")
            self.close()
            return
        self._check(infos, size, problems)

    def _check(self, infos: list[zipfile.ZipInfo], archive_size: int, problems: Problems) -> None:
        limits = self.limits
        if len(infos) > limits.max_files:
            problems.add(self.path.name, f"{len(infos)} entries, over the limit of {limits.max_files}")
            return
        total = 0
        for info in infos:
            label = shown(info.filename)
            is_dir = info.filename.endswith("/")  # not ZipInfo.is_dir(): it fails on an empty name
            name = info.filename.rstrip("/") if is_dir else info.filename
            problem = path_problem(name, limits.max_depth) or zip_entry_problem(info, is_dir, limits)
            if problem is None and name in self._infos:
                problem = "appears twice in the archive"
            if problem:
                problems.add(label, problem)
                continue
            self._infos[name] = info
            total += info.file_size
            self.entries.append(Entry(name, info.file_size, is_dir))
        if total > limits.max_total_bytes:
            problems.add(self.path.name, f"{total} bytes uncompressed, over the limit of {limits.max_total_bytes}")
        elif total > limits.ratio_floor_bytes and total > limits.max_ratio * max(archive_size, 1):
            problems.add(self.path.name, f"compression ratio {total / max(archive_size, 1):.0f} (a zip bomb?)")

    def open(self, entry: Entry) -> BinaryIO:
        assert self._zip is not None
        return self._zip.open(self._infos[entry.name])  # type: ignore[return-value]

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def zip_entry_problem(info: zipfile.ZipInfo, is_dir: bool, limits: Limits) -> str | None:
    """Why one zip entry cannot be extracted safely (its type, encryption, method, size, ratio), or None."""
    mode = info.external_attr >> 16  # the Unix mode, when the archiver stored one
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "a symbolic link (links are not accepted)"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file or folder (a device, FIFO or socket)"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"compression method {info.compress_type} (stored or deflate only)"
    if is_dir:
        return "a folder with content" if info.file_size else None
    if info.file_size > limits.max_file_bytes:
        return f"{info.file_size} bytes uncompressed, over the limit of {limits.max_file_bytes}"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        return f"compression ratio {ratio:.0f}, over the limit of {limits.max_ratio:.0f} (a zip bomb?)"
    return None


EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def declared_entry_count(path: Path) -> int | None:
    """The entry count the zip's end record declares, read before zipfile parses (and holds in memory) the central
    directory; None when no end record is found (zipfile then names the damage)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        tail_start = max(0, size - (EOCD.size + 0xFFFF))  # the record, then a comment of up to 65535 bytes
        f.seek(tail_start)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < EOCD.size:
            return None
        count = EOCD.unpack_from(tail, at)[4]
        if count != 0xFFFF or at < ZIP64_LOCATOR.size:
            return count
        locator = ZIP64_LOCATOR.unpack_from(tail, at - ZIP64_LOCATOR.size)
        if locator[0] != b"PK\x06\x07" or locator[2] > size - ZIP64_EOCD.size:
            return None
        f.seek(locator[2])
        record = f.read(ZIP64_EOCD.size)
        if len(record) < ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            return None
        return ZIP64_EOCD.unpack(record)[6]


class FolderSource:
    """A folder: every entry ``lstat``-ed (links and special files refused), ``copy`` through descriptors."""

    def __init__(self, path: Path, limits: Limits, problems: Problems) -> None:
        self.path = path
        self.limits = limits
        self.entries: list[Entry] = []
        total = 0
        for rel, st in self._walk(problems):
            label = shown(rel)
            problem = path_problem(rel, limits.max_depth)
            if problem is None and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                problem = f"a hard link ({st.st_nlink} names for one file; links are not accepted)"
            if problem is None and stat.S_ISREG(st.st_mode) and st.st_size > limits.max_file_bytes:
                problem = f"{st.st_size} bytes, over the limit of {limits.max_file_bytes}"
            if problem:
                problems.add(label, problem)
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            total += 0 if is_dir else st.st_size
            self.entries.append(Entry(rel, 0 if is_dir else st.st_size, is_dir))
        if total > limits.max_total_bytes:
            problems.add(self.path.name, f"{total} bytes, over the limit of {limits.max_total_bytes}")

    def _walk(self, problems: Problems) -> Iterator[tuple[str, os.stat_result]]:
        """(relative path, lstat) of every file and folder under the root, without following any link; one
        problem and no descent for links and special files; stops past ``max_files`` entries."""
        pending = [""]
        count = 0
        while pending:
            rel_dir = pending.pop()
            try:
                listing = sorted(os.scandir(self.path / rel_dir), key=lambda e: e.name)
            except OSError as err:
                problems.add(shown(rel_dir or "."), f"cannot be listed ({err_phrase(err)})")
                continue
            for item in listing:
                count += 1
                if count > self.limits.max_files:
                    problems.add(self.path.name, f"more than {self.limits.max_files} entries")
                    return
                rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                st = item.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    problems.add(shown(rel), "a symbolic link (links are not accepted)")
                elif stat.S_ISDIR(st.st_mode):
                    if rel.count("/") + 1 > self.limits.max_depth:
                        problems.add(shown(rel), f"more than {self.limits.max_depth} levels deep")
                        continue
                    yield rel, st
                    pending.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    yield rel, st
                else:
                    problems.add(shown(rel), "not a regular file or folder (a device, FIFO or socket)")

    def open(self, entry: Entry) -> BinaryIO:
        """The file, opened through its folders' descriptors with O_NOFOLLOW, checked again after opening."""
        parts = entry.name.split("/")
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = next_fd
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(file_fd)
            raise OSError(f"{entry.name}: changed into a link or special file after it was listed")
        return os.fdopen(file_fd, "rb")

    def close(self) -> None:
        pass


Source = ZipSource | FolderSource


def open_source(path: Path, limits: Limits, problems: Problems) -> Source | None:
    """The submission at ``path`` (a folder or a zip file) with its entries checked; None when it is neither."""
    if path.is_dir():
        return FolderSource(path, limits, problems)
    if not path.is_file():
        problems.add(shown(str(path)), "not found (a submission is a folder or a .zip file)")
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in ZIP_SIGNATURES:
        problems.add(shown(path.name), "not a zip archive (a submission is a folder or a .zip file)")
        return None
    return ZipSource(path, limits, problems)


def copy_entry(source: Source, entry: Entry, dest: Path) -> str:
    """Copy one checked entry to ``dest`` (a path the caller chose), reading at most its declared size; returns the
    copy's SHA-256. Raises ``OSError``/``ValueError`` (or a zip error) with one phrase."""
    digest = hashlib.sha256()
    written = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with source.open(entry) as src, open(dest, "xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > entry.size:
                raise ValueError(f"holds more than the {entry.size} bytes its header declares")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def err_phrase(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return shown(text) if text else type(err).__name__
