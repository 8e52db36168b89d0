"""Real PostgreSQL and Mosquitto servers started as child processes, on free loopback ports.

Used by ``quantrac demo`` when nothing is configured, and by the test suite. They run the
machine's own binaries (Debian's ``postgresql`` and ``mosquitto`` packages), in a private
directory, so nothing needs a system service or root set-up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quantrac.core.settings import default_config_dir


class LocalServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_or_free(port: int) -> int:
    """The port asked for if nothing listens on it, else any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def wait_for_port(port: int, timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise LocalServerError(f"server on port {port} exited during start-up")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise LocalServerError(f"nothing listens on port {port} after {timeout} s")


def find_postgres_bindir() -> Path | None:
    override = os.environ.get("QUANTRAC_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
        reverse=True,
    )
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def find_mosquitto() -> Path | None:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    return Path(found) if found else None


def find_dynamic_security_plugin() -> Path | None:
    """Mosquitto's dynamic-security plugin (in Debian's mosquitto package since 2.0)."""
    for pattern in (
        "/usr/lib/*/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def _service_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root; borrow Debian's 'postgres' account then."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise LocalServerError(
            "running as root needs the 'postgres' system user (Debian's postgresql package "
            "creates it)"
        ) from None


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def switch() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return switch


def _let_traverse(directory: Path) -> None:
    """The 'postgres' user must reach its data directory through root's private temp dirs."""
    for folder in [directory, *directory.parents]:
        mode = folder.stat().st_mode
        if folder.stat().st_uid == 0 and not mode & 0o001:
            folder.chmod(mode | 0o001)


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster; ``timescale=True`` preloads the extension if installed."""

    root: Path
    port: int = field(default_factory=free_port)
    timescale: bool = False
    durable: bool = True
    bindir: Path | None = None
    _user: pwd.struct_passwd | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def timescale_available(self) -> bool:
        assert self.bindir is not None
        pg_config = self.bindir / "pg_config"
        if pg_config.exists():
            libdir = subprocess.run(
                [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False
            ).stdout.strip()
        else:
            libdir = str(self.bindir.parent / "lib")
        return any(Path(libdir).glob("timescaledb*.so"))

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            preexec_fn=_demote(self._user),
            check=False,
            cwd="/",
        )
        if check and result.returncode != 0:
            raise LocalServerError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")
        return result

    def start(self) -> PostgresServer:
        self.bindir = self.bindir or find_postgres_bindir()
        if self.bindir is None:
            raise LocalServerError(
                "no PostgreSQL server binaries found: install Debian's "
                "'postgresql' package or set QUANTRAC_DATABASE_URL"
            )
        self._user = _service_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            _let_traverse(self.root.parent)
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            )
            conf = [
                "listen_addresses = '127.0.0.1'",
                f"port = {self.port}",
                f"unix_socket_directories = '{self.root}'",
                "max_connections = 50",
                "shared_buffers = 256MB",
                "timezone = 'UTC'",
                "log_min_messages = warning",
            ]
            if not self.durable:
                # Tests only: a clean shutdown still writes everything, a machine crash would not.
                conf += ["fsync = off", "full_page_writes = off"]
            if self.timescale and self.timescale_available():
                conf += [
                    "shared_preload_libraries = 'timescaledb'",
                    "timescaledb.telemetry_level = off",
                ]
            with (self.datadir / "postgresql.conf").open("a") as fh:
                fh.write("\n# quantrac local server\n" + "\n".join(conf) + "\n")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.bindir is None or not (self.datadir / "postmaster.pid").exists():
            return
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "stop",
            check=False,
        )

    def restart(self) -> None:
        self.stop()
        self.start()


# Lines of the shipped configuration that name its listeners, files and plugins: replaced by
# local ones.
_LOCAL_REPLACES = (
    "listener",
    "persistence",
    "log_dest",
    "user ",
    "certfile",
    "keyfile",
    "cafile",
    "tls_version",
    "require_certificate",
    "plugin",
    "password_file",
    "acl_file",
    "allow_anonymous",
)


@dataclass
class MosquittoServer:
    """A private Mosquitto with the shipped settings on one loopback listener.

    With ``auth_dir`` (a folder written by ``quantrac stations credentials``) it signs clients in
    and applies the ACLs as in production: the dynamic-security plugin, no anonymous access.
    Without, it accepts anonymous clients: the test suite's shared broker.
    """

    root: Path
    port: int = field(default_factory=free_port)
    persistence: bool = True
    auth_dir: Path | None = None
    # Lines appended after the listener (TLS files, password_file, allow_anonymous false …);
    # a later line wins in Mosquitto's configuration.
    extra_config: list[str] = field(default_factory=list)
    binary: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The shipped configuration, with the listener and paths made local."""
        shipped = (default_config_dir() / "mosquitto" / "mosquitto.conf").read_text()
        keep = [line for line in shipped.splitlines() if not line.startswith(_LOCAL_REPLACES)]
        keep += [
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.root}/",
            f"log_dest file {self.root}/mosquitto.log",
        ]
        if self.auth_dir is not None:
            from quantrac.broker_auth import MOSQUITTO_DYNSEC

            plugin = find_dynamic_security_plugin()
            if plugin is None:
                raise LocalServerError("Mosquitto's dynamic-security plugin is not installed")
            keep += [
                "allow_anonymous false",
                f"plugin {plugin}",
                f"plugin_opt_config_file {self.auth_dir / MOSQUITTO_DYNSEC}",
            ]
        else:
            keep.append("allow_anonymous true")
        keep += [f"listener {self.port} 127.0.0.1", *self.extra_config]
        if os.geteuid() == 0:
            keep.append("user root")
        return "\n".join(keep) + "\n"

    def start(self) -> MosquittoServer:
        self.binary = self.binary or find_mosquitto()
        if self.binary is None:
            raise LocalServerError(
                "no mosquitto binary found: install Debian's 'mosquitto' "
                "package or set QUANTRAC_MQTT_URL"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "mosquitto.conf"
        conf.write_text(self.config_text())
        self.process = subprocess.Popen(
            [str(self.binary), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        process = self.process
        try:
            wait_for_port(self.port, 15, lambda: process.poll() is None)
        except LocalServerError:
            err = process.stderr.read().decode() if process.stderr else ""
            log = self.root / "mosquitto.log"
            detail = log.read_text()[-2000:] if log.exists() else err
            raise LocalServerError(f"mosquitto did not start: {detail}") from None
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            with contextlib.suppress(OSError):
                self.process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()


def find_pure_ftpd() -> Path | None:
    for candidate in (shutil.which("pure-ftpd"), "/usr/sbin/pure-ftpd"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


@dataclass
class FtpAccount:
    name: str
    password: str
    home: Path


@dataclass
class PureFtpdServer:
    """Debian's ``pure-ftpd`` with virtual users (``pure-pw``), one chrooted home per account.

    It must start as root (it chroots and switches to the files' owner); uploads belong to
    ``owner`` (default ``nobody``). ``tls``: 0 plain FTP, 1 FTP or FTPS, 2 FTPS only (needs a PEM
    holding the certificate and key, ``certfile``).
    """

    root: Path
    accounts: list[FtpAccount]
    tls: int = 0
    certfile: Path | None = None
    owner: str = "nobody"
    max_disk_usage_pct: int = 99
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def passwd_file(self) -> Path:
        return self.root / "pureftpd.passwd"

    def _pure_pw(self, *args: str, password: str | None = None) -> None:
        binary = shutil.which("pure-pw") or "/usr/bin/pure-pw"
        given = None if password is None else f"{password}\n{password}\n"
        result = subprocess.run(
            [binary, *args], input=given, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise LocalServerError(f"pure-pw {args[0]}: {result.stderr.strip()}")

    def start(self) -> PureFtpdServer:
        binary = find_pure_ftpd()
        if binary is None:
            raise LocalServerError("pure-ftpd not found (Debian package pure-ftpd)")
        if os.geteuid() != 0:
            raise LocalServerError("pure-ftpd must start as root (chroot, virtual users)")
        user = pwd.getpwnam(self.owner)
        self.root.mkdir(parents=True, exist_ok=True)
        for account in self.accounts:
            account.home.mkdir(parents=True, exist_ok=True)
            os.chown(account.home, user.pw_uid, user.pw_gid)
            self._pure_pw(
                "useradd",
                account.name,
                "-f",
                str(self.passwd_file),
                "-u",
                str(user.pw_uid),
                "-g",
                str(user.pw_gid),
                "-d",
                str(account.home),
                password=account.password,
            )
        database = self.root / "pureftpd.pdb"
        self._pure_pw("mkdb", str(database), "-f", str(self.passwd_file))
        passive = free_port()
        args = [
            str(binary),
            "-S",
            f"127.0.0.1,{self.port}",
            "-l",
            f"puredb:{database}",
            "-E",  # no anonymous access
            "-A",  # every account chrooted to its home
            "-H",
            "-4",
            "-u",
            "1",
            "-k",
            str(self.max_disk_usage_pct),
            "-p",
            f"{passive}:{passive + 20}",
            "-P",
            "127.0.0.1",
            "-g",
            str(self.root / "pure-ftpd.pid"),
            "-Y",
            str(self.tls),
        ]
        if self.tls:
            if self.certfile is None:
                raise LocalServerError("FTPS needs a certificate file")
            args += ["-2", str(self.certfile)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        process = self.process
        try:
            wait_for_port(self.port, 10, lambda: process.poll() is None)
        except LocalServerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
