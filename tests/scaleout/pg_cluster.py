"""A private, throw-away PostgreSQL server for one test (or one benchmark).

    with PgCluster() as pg:              # initdb + pg_ctl start on a free 127.0.0.1 port
        pg.psql("SELECT 1")              # -> [["1"]]
        run(["sync", ..., "--state", pg.url])

* Binaries: $CHSYNC_PG_BINDIR, else /usr/lib/postgresql/15/bin, else `pg_config --bindir`, else
  the newest /usr/lib/postgresql/*/bin. Debian 12: `apt-get install postgresql` (PostgreSQL 15).
* PostgreSQL refuses to run as root: as root, the data directory is chowned to the `postgres`
  user and initdb / pg_ctl run through `runuser -u postgres --`; as any other user they run
  directly. Clients (psql, createdb, chsync) connect over TCP to 127.0.0.1 as user `postgres`
  with trust authentication, so they need no user switch.
* The server listens on 127.0.0.1 only (plus a Unix socket inside the temp directory), on a port
  picked by binding 127.0.0.1:0. `fast=True` (tests) turns off fsync, synchronous_commit and
  full_page_writes; `fast=False` (benchmarks) keeps PostgreSQL's durable defaults.
* Every wait is bounded. stop() is `pg_ctl stop -m immediate` (then SIGKILL of the postmaster if
  that did not work) and removes the temp directory; it is idempotent and registered with atexit.

available() -> (ok, reason) is the cheap check the tests use to skip; PgCluster() raises
PgUnavailable (with the reason) when initdb or the server fails for an environmental reason
(no `postgres` user, no shared memory, ...); any other failure is a RuntimeError with the log.
start_or_skip() turns PgUnavailable into unittest.SkipTest, unless CHSYNC_REQUIRE_PG=1 (CI,
where scripts/install-deps installed PostgreSQL): then a missing PostgreSQL fails the test.
"""
import atexit
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DEFAULT_DB = "chsync"
SUPERUSER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "postgres", "psql", "createdb")

# initdb / postmaster messages that mean "this machine cannot run PostgreSQL here", not "bug".
_ENVIRONMENTAL = re.compile(
    r"could not create shared memory segment|could not create semaphores|"
    r"No space left on device|Function not implemented|Operation not permitted|"
    r"cannot be run as root|could not look up effective user ID|invalid locale settings",
    re.IGNORECASE)


class PgUnavailable(Exception):
    """PostgreSQL cannot run in this environment (missing binaries, user, shared memory...)."""


def _is_root():
    return os.geteuid() == 0


def _has_tools(d):
    return bool(d) and all(os.access(os.path.join(d, t), os.X_OK) for t in _TOOLS)


def find_bindir():
    """The directory holding initdb, pg_ctl, postgres, psql and createdb, or None."""
    env = os.environ.get("CHSYNC_PG_BINDIR")
    if env:
        return env if _has_tools(env) else None
    if _has_tools("/usr/lib/postgresql/15/bin"):
        return "/usr/lib/postgresql/15/bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            p = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            d = p.stdout.strip()
            if p.returncode == 0 and _has_tools(d):
                return d
        except (OSError, subprocess.TimeoutExpired):
            pass

    def version(path):
        m = re.search(r"/postgresql/([0-9.]+)/bin$", path)
        return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_tools(d):
            return d
    return None


def _postgres_user():
    import pwd
    try:
        pw = pwd.getpwnam(SUPERUSER)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return None


def available():
    """(True, "") when a PgCluster can be attempted here, else (False, reason)."""
    bindir = find_bindir()
    if bindir is None:
        where = os.environ.get("CHSYNC_PG_BINDIR") or (
            "/usr/lib/postgresql/15/bin, `pg_config --bindir` or /usr/lib/postgresql/*/bin")
        return False, (f"PostgreSQL server binaries ({', '.join(_TOOLS)}) not found in {where}; "
                       "install them with `bash scripts/install-deps` (Debian: postgresql)")
    if _is_root():
        if _postgres_user() is None:
            return False, ("running as root and there is no `postgres` user to run the "
                           "PostgreSQL server as (PostgreSQL refuses root)")
        if shutil.which("runuser") is None:
            return False, "running as root and `runuser` (util-linux) is missing"
    return True, ""


def start_or_skip(**kwargs):
    """A started PgCluster, or unittest.SkipTest(reason) when PostgreSQL cannot run here.
    With CHSYNC_REQUIRE_PG=1 the reason is raised as a failure instead of a skip."""
    import unittest
    try:
        return PgCluster(**kwargs)
    except PgUnavailable as e:
        if os.environ.get("CHSYNC_REQUIRE_PG") == "1":
            raise AssertionError(f"CHSYNC_REQUIRE_PG=1 but PostgreSQL is unavailable: {e}")
        raise unittest.SkipTest(f"PostgreSQL unavailable: {e}")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _client_env():
    """The caller's environment without PG* variables (PGHOST, PGOPTIONS... would redirect or
    change the clients), with a bounded connect timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


class PgCluster:
    """One private PostgreSQL server: started in __init__, stopped by stop() / context exit."""

    def __init__(self, fast=True, max_connections=200, settings=None, dbname=DEFAULT_DB,
                 start_timeout=30):
        ok, reason = available()
        if not ok:
            raise PgUnavailable(reason)
        self.bindir = find_bindir()
        self.fast = fast
        self.dbname = dbname
        self.port = None
        self._stopped = False
        self._as_postgres = _is_root()
        self.base = tempfile.mkdtemp(prefix="chsync-pg-")
        self.datadir = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        self.logfile = os.path.join(self.base, "postgres.log")
        os.mkdir(self.sockdir)
        atexit.register(self.stop)
        try:
            if self._as_postgres:
                uid, gid = _postgres_user()
                for p in (self.base, self.sockdir):
                    os.chown(p, uid, gid)
            self._initdb()
            opts = {"listen_addresses": "127.0.0.1", "max_connections": str(max_connections)}
            if fast:
                opts.update(fsync="off", synchronous_commit="off", full_page_writes="off")
            opts.update({k: str(v) for k, v in (settings or {}).items()})
            self._opts = opts
            self._start(opts, start_timeout)
            self.createdb(dbname)
        except BaseException:
            self.stop()
            raise

    # ---- lifecycle ----
    def _server_cmd(self, args):
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        return ["runuser", "-u", SUPERUSER, "--", *cmd] if self._as_postgres else cmd

    def _run_server_tool(self, args, timeout):
        """Runs initdb/pg_ctl as the server user. Output goes to a file, not a pipe: pg_ctl's
        postmaster must not inherit a pipe the test waits on."""
        out = os.path.join(self.base, f"{args[0]}-{time.time_ns()}.out")
        with open(out, "wb") as f:
            try:
                p = subprocess.run(self._server_cmd(args), stdin=subprocess.DEVNULL, stdout=f,
                                   stderr=subprocess.STDOUT, cwd=self.base, timeout=timeout,
                                   env=_client_env())
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc = None
        with open(out, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return rc, text

    def _initdb(self):
        rc, text = self._run_server_tool(
            ["initdb", "-D", self.datadir, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
             "--locale=C", "--no-sync"], timeout=120)
        if rc == 0:
            return
        msg = f"initdb failed (exit {rc}):\n{text[-3000:]}"
        if rc is not None and _ENVIRONMENTAL.search(text):
            raise PgUnavailable(msg)
        raise RuntimeError(msg)

    def _log_tail(self, n=3000):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def _start(self, opts, timeout, fixed_port=None):
        last = ""
        for _ in range(1 if fixed_port else 3):  # a free port can be taken between the probe
            port = fixed_port or free_port()      # and the bind: retry (not for a restart)
            o = [f"-p {port}", f"-k {self.sockdir}"] + [f"-c {k}={v}" for k, v in opts.items()]
            rc, text = self._run_server_tool(
                ["pg_ctl", "start", "-w", "-t", str(timeout), "-D", self.datadir,
                 "-l", self.logfile, "-o", " ".join(o)], timeout=timeout + 15)
            if rc == 0:
                self.port = port
                return
            log = self._log_tail()
            last = f"pg_ctl start failed (exit {rc}):\n{text[-1500:]}\n--- server log ---\n{log}"
            self._kill_postmaster()
            if "already in use" not in log and "could not bind" not in log:
                break
        if _ENVIRONMENTAL.search(last) and "already in use" not in last:
            raise PgUnavailable(last)
        raise RuntimeError(last)

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def _kill_postmaster(self):
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self):
        """Immediate shutdown and removal of the data directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                rc, _ = self._run_server_tool(
                    ["pg_ctl", "stop", "-m", "immediate", "-w", "-t", "30", "-D", self.datadir],
                    timeout=45)
                if rc != 0:
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            try:
                atexit.unregister(self.stop)
            except Exception:  # noqa: BLE001 - interpreter shutting down
                pass

    def crash(self):
        """Immediate shutdown, as in a crash (no checkpoint; WAL not yet flushed is lost); the
        data directory stays for restart()."""
        rc, _ = self._run_server_tool(
            ["pg_ctl", "stop", "-m", "immediate", "-w", "-t", "30", "-D", self.datadir],
            timeout=45)
        if rc != 0:
            self._kill_postmaster()

    def restart(self, timeout=30):
        """Starts the server again after crash(), on the same port (URLs stay valid); runs
        crash recovery."""
        self._start(self._opts, timeout, fixed_port=self.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def running(self):
        return not self._stopped and self.port is not None

    # ---- clients ----
    def url_for(self, dbname):
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def url(self):
        return self.url_for(self.dbname)

    def _client(self, tool, *args):
        return [os.path.join(self.bindir, tool), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", SUPERUSER, *args]

    def createdb(self, name):
        p = subprocess.run(self._client("createdb", name), capture_output=True, text=True,
                           timeout=60, env=_client_env(), stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {p.stderr.strip()}")
        return self.url_for(name)

    def psql(self, sql, db=None, timeout=60):
        """Runs SQL and returns psql's output rows as lists of strings (`psql -At -F '|'`; NULL
        reads as ""; several statements print all their rows). Raises RuntimeError on an error."""
        p = subprocess.run(
            self._client("psql", "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1",
                         "-d", db or self.dbname, "-c", sql),
            capture_output=True, text=True, timeout=timeout, env=_client_env(),
            stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed (exit {p.returncode}) on {sql!r}: {p.stderr.strip()}")
        return [line.split("|") for line in p.stdout.splitlines() if line != ""]

    def scalar(self, sql, db=None):
        rows = self.psql(sql, db)
        if len(rows) != 1 or len(rows[0]) != 1:
            raise RuntimeError(f"expected one value from {sql!r}, got {rows!r}")
        return rows[0][0]
