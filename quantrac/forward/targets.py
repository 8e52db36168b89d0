"""Where forwarded files go: an FTP or FTPS server (explicit TLS, ``AUTH TLS``), or a folder.

Blocking I/O (ftplib, files), run in a worker thread by the caller. Every file is written under
a temporary dot-name and renamed when complete, so a receiver watching the folder never reads
half a file (quantrac's own watcher skips dot-files). Errors are ``TargetError`` with
``retryable``: a refused or dropped connection, a timeout, a 4xx reply or a full disk may pass;
a refused login, a 5xx reply or a bad certificate will not by waiting.
"""

from __future__ import annotations

import contextlib
import errno
import ftplib
import os
import ssl
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from quantrac.forward.files import ForwardError, Tt10File


class TargetError(Exception):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class Target(Protocol):
    description: str

    def open(self) -> None: ...

    def put(self, item: Tt10File) -> str: ...  # returns where it went

    def close(self) -> None: ...


def _temporary_name(name: str) -> str:
    return f".{name}.part"


@dataclass
class FolderTarget:
    root: Path
    description: str = ""

    def __post_init__(self) -> None:
        self.description = self.description or str(self.root)

    def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, self.root) from exc

    def put(self, item: Tt10File) -> str:
        folder = self.root / item.folder if item.folder else self.root
        final = folder / item.name
        temporary = folder / _temporary_name(item.name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as out:
                out.write(item.content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise _os_error(exc, final) from exc
        return str(final)

    def close(self) -> None:
        pass


def _os_error(exc: OSError, where: Path) -> TargetError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TargetError(f"{where}: disk full ({exc.strerror})", retryable=True)
    return TargetError(f"{where}: {exc.strerror or exc}", retryable=False)


@dataclass
class FtpTarget:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    base: str = ""
    tls: bool = False
    ca_file: Path | None = None
    timeout_s: float = 30.0
    description: str = ""
    _ftp: ftplib.FTP | None = field(default=None, repr=False)
    _made: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        scheme = "ftps" if self.tls else "ftp"
        self.description = self.description or f"{scheme}://{self.host}:{self.port}/{self.base}"

    def open(self) -> None:
        self.close()
        try:
            if self.tls:
                context = ssl.create_default_context(
                    cafile=str(self.ca_file) if self.ca_file else None
                )
                ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=self.timeout_s)
            else:
                ftp = ftplib.FTP(timeout=self.timeout_s)
            ftp.encoding = "utf-8"
            ftp.connect(self.host, self.port)
            ftp.login(self.username, self.password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()  # the data channel is encrypted too
            ftp.set_pasv(True)
        except Exception as exc:
            raise _ftp_error(exc, f"{self.description}: connect") from exc
        self._ftp = ftp
        self._made = set()

    def _ensure_folder(self, ftp: ftplib.FTP, folder: str) -> None:
        path = ""
        for part in [p for p in f"{self.base}/{folder}".split("/") if p]:
            path = f"{path}/{part}" if path else part
            if path in self._made:
                continue
            # 550 when it exists already: the upload below says if it really cannot.
            with contextlib.suppress(ftplib.error_perm):
                ftp.mkd(path)
            self._made.add(path)

    def put(self, item: Tt10File) -> str:
        if self._ftp is None:
            self.open()
        ftp = self._ftp
        assert ftp is not None
        folder = "/".join(p for p in (self.base.strip("/"), item.folder) if p)
        final = f"{folder}/{item.name}" if folder else item.name
        temporary = (
            f"{folder}/{_temporary_name(item.name)}" if folder else _temporary_name(item.name)
        )
        try:
            self._ensure_folder(ftp, item.folder)
            ftp.storbinary(f"STOR {temporary}", BytesIO(item.content))
            try:
                ftp.rename(temporary, final)
            except ftplib.error_perm:
                # Some servers will not rename over an existing file (a file sent again).
                ftp.delete(final)
                ftp.rename(temporary, final)
        except Exception as exc:
            self.close()
            raise _ftp_error(exc, f"{self.description}: {final}") from exc
        return final

    def close(self) -> None:
        if self._ftp is not None:
            with contextlib.suppress(Exception):
                self._ftp.quit()
            with contextlib.suppress(Exception):
                self._ftp.close()
            self._ftp = None


def _ftp_error(exc: BaseException, where: str) -> TargetError:
    if isinstance(exc, TargetError):
        return exc
    if isinstance(exc, ftplib.error_temp):  # 4xx: try again later
        return TargetError(f"{where}: {exc}", retryable=True)
    if isinstance(exc, ftplib.error_perm):
        text = str(exc)
        # 552: storage allocation exceeded, i.e. the upstream disk or quota is full.
        return TargetError(f"{where}: {text}", retryable=text.startswith("552"))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TargetError(f"{where}: TLS certificate not trusted: {exc}", retryable=False)
    if isinstance(exc, OSError | EOFError | ftplib.Error):
        return TargetError(f"{where}: {type(exc).__name__}: {exc}", retryable=True)
    return TargetError(f"{where}: {type(exc).__name__}: {exc}", retryable=False)


def target_from_url(
    url: str, *, ca_file: Path | None = None, timeout_s: float = 30.0
) -> FolderTarget | FtpTarget:
    """``ftp://user:password@host[:port]/folder``, ``ftps://…`` (explicit TLS, port 21) or
    ``file:///folder`` (or a plain path)."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        path = unquote(parts.path if parts.scheme else url)
        if not path:
            raise ForwardError(f"{url!r}: no folder")
        return FolderTarget(Path(path))
    if parts.scheme not in ("ftp", "ftps"):
        raise ForwardError(f"{url!r}: the scheme must be ftp, ftps or file")
    if not parts.hostname:
        raise ForwardError(f"{url!r}: no host")
    if not parts.username:
        raise ForwardError(f"{url!r}: no user name (ftp://user:password@host/folder)")
    safe = f"{parts.scheme}://{parts.username}@{parts.hostname}:{parts.port or 21}{parts.path}"
    return FtpTarget(
        host=parts.hostname,
        port=parts.port or 21,
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        base=unquote(parts.path).strip("/"),
        tls=parts.scheme == "ftps",
        ca_file=ca_file,
        timeout_s=timeout_s,
        description=safe,
    )
