"""Helpers of the benchmarks: backends to run against, a gunicorn web process, HTTP drivers, RSS, percentiles."""
from __future__ import annotations

import http.client
import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support.services and app.bus, when run as `python bench/x.py`

STREAM = "bench"
PARTITIONS = 3
HTTP_TIMEOUT_S = 120.0


@dataclass
class BackendEnv:
    """Where one backend's run lives: the web process environment and the raw handles for the baseline."""

    name: str
    workdir: Path
    env: dict[str, str]
    database_url: str
    pg_dsn: str | None = None  # psycopg2 DSN of the metadata database (postgresql, kafka)
    kafka_bootstrap: str | None = None
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def _pg_dsn(url: str) -> str:
    """A psycopg2 DSN from a SQLAlchemy URL."""
    import sqlalchemy as sa

    u = sa.make_url(url)
    parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


@contextmanager
def backend_env(name: str, workdir: Path) -> Iterator[BackendEnv]:
    """A fresh metadata database (and broker, for kafka) for one backend; everything dropped on exit."""
    from tests.support.services import postgres_database, tansu_broker

    with ExitStack() as stack:
        bootstrap = None
        if name == "sqlite":
            url = f"sqlite:///{workdir / 'bus.db'}"
        elif name in ("postgresql", "kafka"):
            url = stack.enter_context(postgres_database())
            if name == "kafka":
                bootstrap = stack.enter_context(tansu_broker())
        else:
            raise ValueError(f"unknown backend {name!r}: sqlite, postgresql or kafka")
        be = BackendEnv(name=name, workdir=workdir, env={}, database_url=url,
                        pg_dsn=None if name == "sqlite" else _pg_dsn(url), kafka_bootstrap=bootstrap)
        be.env = {
            **os.environ,
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": url,
            "EVENT_LOG_URL": f"kafka://{bootstrap}" if bootstrap else "sql",
            "ADMIN_PASSWORD": be.admin_password,
            "INSTANCE_DIR": str(workdir / "instance"),
        }
        yield be


def migrate_and_init(be: BackendEnv) -> None:
    """`flask db upgrade` and `flask bus init` as subprocesses, as in production."""
    for args in (["db", "upgrade"], ["bus", "init"]):
        proc = subprocess.run([str(BIN / "flask"), "--app", "app:create_app", *args], cwd=ROOT, env=be.env,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


@dataclass
class WebServer:
    """A running gunicorn master with its workers."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def worker_pids(self) -> list[int]:
        """Pids of the master's children (the workers)."""
        return children(self.proc.pid)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return sorted(out)


def proc_status_kb(pid: int, field_name: str) -> int:
    """A kB field (VmRSS, VmHWM) of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


@contextmanager
def web_server(be: BackendEnv, port: int, workers: int = 2, threads: int = 8) -> Iterator[WebServer]:
    """`gunicorn -w W --threads T 'app:create_app()'` in its own process group; stopped on exit."""
    log_path = be.workdir / "gunicorn.log"
    log = log_path.open("wb")
    cmd = [str(BIN / "gunicorn"), "-w", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{port}",
           "--timeout", "120", "app:create_app()"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=be.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = WebServer(proc=proc, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        _wait_healthy(server, workers)
        yield server
    finally:
        stop_process_group(proc)
        log.close()


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the process group we started, KILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def _wait_healthy(server: WebServer, workers: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.log_path.read_text()[-4000:]}")
        try:
            if httpx.get(server.base_url + "/health", timeout=2).status_code == 200 \
                    and len(server.worker_pids()) >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not healthy in {timeout:.0f}s:\n{server.log_path.read_text()[-4000:]}")


def check(resp: httpx.Response, status: int, what: str) -> httpx.Response:
    """Raise with the server's answer unless ``resp`` has ``status``."""
    if resp.status_code != status:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.request.method} {resp.request.url}\n"
                           f"{resp.text[:2000]}")
    return resp


def provision(base_url: str, password: str) -> str:
    """Log in as admin, create an API key with every scope and the bench stream; return the key."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        token = check(client.post("/api/v1/security/login",
                                  json={"username": "admin", "password": password, "provider": "db"}),
                      200, "login").json()["access_token"]
        key = check(client.post("/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"},
                                json={"name": "bench", "scopes": ["publish", "consume", "manage"]}),
                    201, "create API key").json()["key"]
        check(client.post("/api/v1/streams", headers={"Authorization": f"Bearer {key}"},
                          json={"name": STREAM, "partitions": PARTITIONS}), 201, "create stream")
    return key


def _client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` on ``count`` threads and re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def post_batches(base_url: str, key: str, bodies: Sequence[bytes], events_per_body: int, threads: int) -> float:
    """POST every body (keep-alive, one client per thread) and return events/s over the wall time."""
    path = f"/api/v1/streams/{STREAM}/events"
    clients = [_client(base_url, key) for _ in range(threads)]
    try:
        for c in clients:
            check(c.get("/health"), 200, "health")  # connect before the clock starts
        counter = itertools.count()
        start = threading.Barrier(threads + 1)

        def work(i: int) -> None:
            client = clients[i]
            start.wait()
            while (n := next(counter)) < len(bodies):
                check(client.post(path, content=bodies[n]), 201, "publish batch")

        t0 = 0.0

        def starter() -> None:
            nonlocal t0
            start.wait()
            t0 = time.perf_counter()

        threading.Thread(target=starter, daemon=True).start()
        run_threads(threads, work)
        elapsed = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    return len(bodies) * events_per_body / elapsed


@dataclass
class Latencies:
    """Single-event publish latencies (seconds) from an open-loop paced run."""

    service: list[float]  # request sent -> response read
    from_schedule: list[float]  # scheduled send time -> response read (counts client-side lateness too)
    late_sends: int  # sends that left more than 1 ms after their scheduled time
    achieved_rate: float


def _post_keepalive(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> None:
    """POST on a kept-alive connection (reconnecting once if the server closed it); raise unless 201."""
    for attempt in (1, 2):
        try:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            text = resp.read()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            if attempt == 2:
                raise
    if resp.status != 201:
        raise RuntimeError(f"publish one: HTTP {resp.status} POST {path}\n{text[:2000]!r}")


def paced_singles(base_url: str, key: str, bodies: Sequence[bytes], rate: float, threads: int) -> Latencies:
    """POST one event per body at a steady ``rate``/s on an open-loop schedule across ``threads`` senders.

    The stdlib client, not httpx: it costs about a third of the CPU per request, and the client shares the cores.
    """
    path = f"/api/v1/streams/{STREAM}/events"
    host, port = base_url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conns = [http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S) for _ in range(threads)]
    service: list[float] = []
    sched: list[float] = []
    late = 0
    lock = threading.Lock()
    try:
        for c in conns:
            c.connect()
        counter = itertools.count()
        t0 = time.perf_counter() + 0.2

        def work(i: int) -> None:
            nonlocal late
            conn = conns[i]
            while (n := next(counter)) < len(bodies):
                due = t0 + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                _post_keepalive(conn, path, bodies[n], headers)
                done = time.perf_counter()
                with lock:
                    service.append(done - sent)
                    sched.append(done - due)
                    late += sent - due > 0.001

        run_threads(threads, work)
        elapsed = time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()
    return Latencies(service=service, from_schedule=sched, late_sends=late, achieved_rate=len(bodies) / elapsed)


def percentiles_ms(samples: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[int, float]:
    """Percentiles (inclusive method) of samples in seconds, as milliseconds."""
    import statistics

    if len(samples) < 2:
        return {p: (samples[0] * 1000 if samples else float("nan")) for p in points}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {p: cuts[p - 1] * 1000 for p in points}


def json_body(obj: object) -> bytes:
    """orjson bytes."""
    return orjson.dumps(obj)


_HZ = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[str, float]]:
    """(comm, CPU seconds) of every process; our own pid counts its waited-for children too (the raw writers)."""
    out = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        f = rest.split()
        ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if int(entry.name) == me else 0)
        out[int(entry.name)] = (comm.split("(", 1)[1], ticks / _HZ)
    return out


def _machine_ticks() -> tuple[int, int]:
    """(all, idle + iowait) jiffies since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v), v[3] + v[4]


class CpuMeter:
    """Cores used by each party (web, client, postgres, broker, other) over a phase: is the box saturated, by whom?"""

    def __init__(self, web_pids: Callable[[], Sequence[int]] = list) -> None:
        self.web_pids = web_pids
        self.totals: dict[str, float] = {}
        self.wall = 0.0
        self.busy_ticks = self.all_ticks = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Add the CPU used while the block runs."""
        p0, m0, t0 = _proc_cpu(), _machine_ticks(), time.perf_counter()
        yield
        p1, m1 = _proc_cpu(), _machine_ticks()
        self.wall += time.perf_counter() - t0
        self.all_ticks += m1[0] - m0[0]
        self.busy_ticks += (m1[0] - m0[0]) - (m1[1] - m0[1])
        web = set(self.web_pids())
        for pid, (comm, cpu) in p1.items():
            used = cpu - p0.get(pid, (comm, 0.0))[1]
            if pid in web:
                who = "web"
            elif pid == os.getpid():
                who = "client"
            elif comm.startswith("postgres"):
                who = "postgres"
            elif comm.startswith("tansu"):
                who = "broker"
            else:
                who = "other"
            self.totals[who] = self.totals.get(who, 0.0) + used

    def summary(self) -> str:
        """'web 1.20, client 0.50, ... cores; machine 98% busy'."""
        if not self.wall:
            return "-"
        parts = ", ".join(f"{k} {v / self.wall:.2f}" for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1])
                          if v / self.wall >= 0.01)
        return f"{parts} cores; machine {100 * self.busy_ticks / max(1, self.all_ticks):.0f}% busy"


Row = tuple[str, str, str, str, str]  # figure, value, target, ratio, result


def say(msg: str) -> None:
    """Print a line of the report at once (benchmarks report as they go)."""
    print(msg, flush=True)  # noqa: T201 (a benchmark's output is its report)


def print_rows(heading: str, rows: Sequence[Row], cpu: Mapping[str, str]) -> None:
    """One backend's figures as a fixed-width table, after a heading, then CPU by party per phase."""
    table = [("figure", "value", "target", "ratio", "result"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    say(heading)
    for r in table:
        say("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for phase, text in cpu.items():
        say(f"  cpu during {phase}: {text}")


def print_markdown(reports: Sequence[tuple[str, Sequence[Row]]]) -> None:
    """Every backend's rows as one Markdown table (for docs/performance.md)."""
    say("\n| backend | figure | value | target | ratio | result |\n| --- | --- | --- | --- | --- | --- |")
    for backend, rows in reports:
        for r in rows:
            say(f"| {backend} | " + " | ".join(c.strip() for c in r) + " |")
