"""A throwaway PostgreSQL server for the tests.

:func:`throwaway_server` runs ``initdb`` into a fresh temporary folder, starts the server
with ``pg_ctl`` on a free port of 127.0.0.1 (its unix socket in that folder too, so it never
touches ``/var/run/postgresql``), creates one database, yields its SQLAlchemy URL, and
stops the server and deletes the folder when the block ends, also when it ends with an
error.  PostgreSQL refuses to run as root, so under root every server command runs as an
unprivileged user (``postgres`` where the Debian package made one, else ``nobody``) that
owns the folder.  :func:`restartable_server` yields the server itself instead
(:class:`Server`), for a test that stops and starts it under its clients.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

TOOLS = ("initdb", "pg_ctl", "postgres")
USER = "archbench"  # the database superuser initdb creates (trust authentication)
DATABASE = "archbench_test"


class NoPostgres(RuntimeError):
    """PostgreSQL's server binaries or the psycopg driver are not installed."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the one ``initdb`` on
    PATH resolves to (Debian links only some tools onto PATH), else the newest
    ``/usr/lib/postgresql/<version>/bin``."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")], reverse=True)
    candidates += [Path(p) for p in versions]
    for d in candidates:
        if all(os.access(d / tool, os.X_OK) for tool in TOOLS):
            return d
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise NoPostgres("running as root, and neither a 'postgres' nor a 'nobody' account exists to run "
                     "PostgreSQL as (it refuses to run as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], user: pwd.struct_passwd | None, timeout: float = 120) -> subprocess.CompletedProcess:
    kw = {}
    if user is not None:
        kw = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no stray PGDATA, PGPORT...
    env["LC_ALL"] = env["LANG"] = "C"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", **kw)


class Server:
    """A PostgreSQL data folder made by ``initdb`` that can be stopped and started again on
    the same port (a restart, as a client sees it); :func:`restartable_server` makes one."""

    def __init__(self, bin_dir: Path, user: pwd.struct_passwd | None, root: Path) -> None:
        self.bin_dir, self.user, self.root = bin_dir, user, root
        self.data, self.log = root / "data", root / "server.log"
        self.port: int | None = None
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _pg_ctl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return _run([str(self.bin_dir / "pg_ctl"), *args, "-D", str(self.data)], self.user, timeout=timeout)

    def start(self) -> None:
        """Start the server; the first start picks a free port, later ones reuse it."""
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        res = self._pg_ctl("start", "-w", "-t", "120", "-l", str(self.log), "-o", opts)
        if res.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{res.stdout}\n{res.stderr}\n"
                               + (self.log.read_text() if self.log.exists() else ""))
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected, transactions rolled back;
        ``immediate``: no clean shutdown at all) and wait until it is down."""
        res = self._pg_ctl("stop", "-m", mode, "-w")
        if res.returncode != 0 and self.running:
            raise RuntimeError(f"pg_ctl stop failed:\n{res.stdout}\n{res.stderr}")
        self.running = False


@contextlib.contextmanager
def restartable_server(attempts: int = 5) -> Iterator[Server]:
    """Start a fresh PostgreSQL server with one database (:attr:`Server.url`); it is stopped
    and its folder deleted when the block ends, also when it ends with an error."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise NoPostgres("PostgreSQL's server binaries (initdb, pg_ctl, postgres) were found neither on PATH nor "
                         "in /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql) or set "
                         "ARCHBENCH_TEST_POSTGRES_URL to a database the tests may use")
    try:
        import psycopg
    except ImportError as e:
        raise NoPostgres(f"the psycopg driver is missing ({e}): pip install -e '.[dev]'") from e
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="archbench-pg-"))  # short: a unix socket path has ~100 bytes
    server = Server(bin_dir, user, root)
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        init = _run([str(bin_dir / "initdb"), "-D", str(server.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                     "--locale=C", "--no-sync"], user)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        # a free port can be taken between choosing it and the server binding it: try another
        failure = None
        for _ in range(attempts):
            server.port = _free_port()
            try:
                server.start()
                break
            except RuntimeError as e:
                failure = e
        if not server.running:
            raise RuntimeError(f"PostgreSQL did not start in {attempts} attempts: {failure}")
        with psycopg.connect(host="127.0.0.1", port=server.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        yield server
    finally:
        if server.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_server(attempts: int = 5) -> Iterator[str]:
    """Start a fresh PostgreSQL server; yields ``postgresql+psycopg://...`` for its database."""
    with restartable_server(attempts) as server:
        yield server.url
