"""A throwaway PostgreSQL server for one test session: initdb into a temp dir, unix socket only."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO

import psycopg

from tests.waiting import wait_until_sync

BINARIES = ("initdb", "postgres")
INSTALL_HINT = "install the postgresql package (initdb and postgres are needed)"


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL binaries on this machine."""


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in BINARIES)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out.stdout.strip())


def find_bindir() -> Path:
    """The first directory holding initdb and postgres: pg_config, Debian layout, PATH."""
    candidates: list[Path] = []
    if bindir := _pg_config_bindir():
        candidates.append(bindir)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates.extend(Path(path) for path in versions)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if _has_binaries(bindir):
            return bindir
    raise PostgresUnavailable(INSTALL_HINT)


class PostgresServer:
    """A private PostgreSQL cluster listening only on a unix socket in its temp dir."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="videoq-pg-"))
        self.datadir = self.root / "data"
        self._runas = self._unprivileged_user()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd | None:
        # PostgreSQL refuses to run as root; borrow the postgres (or nobody) account then.
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise PostgresUnavailable("running as root and no postgres/nobody user to run as")

    def _command(self, *args: str, die_with_parent: bool = False) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        wrap = []
        if self._runas is not None:
            user = self._runas
            wrap = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        if die_with_parent:
            # SIGINT is PostgreSQL's fast shutdown: a killed test run leaves no server behind.
            wrap.append("--pdeathsig=INT")
        return ["setpriv", *wrap, *command] if wrap and shutil.which("setpriv") else command

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._command(*args), capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster and start the server; returns once it accepts connections."""
        if self._runas is not None:
            os.chown(self.root, self._runas.pw_uid, self._runas.pw_gid)
        initdb = ["-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        self._run("initdb", *initdb, "--no-locale", "--no-sync")
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "timezone": "UTC",
            "max_connections": "200",
        }
        options = [item for key, value in settings.items() for item in ("-c", f"{key}={value}")]
        command = self._command("postgres", "-D", str(self.datadir), *options, die_with_parent=True)
        self._log = (self.root / "postgres.log").open("wb")
        # Run in the foreground (not pg_ctl's daemon) so the server is our child process.
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.root
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        wait_until_sync(self._accepts, "postgres to accept connections", timeout, interval=0.05)

    def _accepts(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"postgres exited at start-up; see {self.root}/postgres.log")
        try:
            psycopg.connect(self.conninfo(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def conninfo(self, user: str = "postgres", dbname: str = "postgres") -> str:
        """A libpq connection string for `user` over the private socket."""
        return f"host={self.root} port=5432 user={user} dbname={dbname}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        try:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGINT)
                try:
                    self._process.wait(15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(5)
        finally:
            if self._log is not None:
                self._log.close()
            shutil.rmtree(self.root, ignore_errors=True)
