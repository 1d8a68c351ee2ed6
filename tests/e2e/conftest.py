"""End-to-end fixtures: the embedded bus (`python run.py`) in a subprocess, Debian's chromium through Playwright.

Nothing here skips: without /usr/bin/chromium (``apt-get install -y chromium``) or Playwright the tests fail.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import free_port

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN_PASSWORD = "e2e-admin-password"  # noqa: S105 (a throw-away bus)
USER_PASSWORD = "e2e-user-password"  # noqa: S105
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"  # git-ignored


@dataclass
class Bus:
    """The running bus: its URL, an admin JWT, and a user per role (all in tenant ``default``)."""

    url: str
    admin_token: str
    users: dict[str, str]  # role -> username

    def api(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        """Call the REST API as admin; check the status when given."""
        resp = httpx.request(method, f"{self.url}/api/v1{path}", json=body,
                             headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp.json() if resp.content else None

    def status(self, path: str) -> int:
        """The status of an admin GET on the REST API."""
        return httpx.get(f"{self.url}/api/v1{path}", headers={"Authorization": f"Bearer {self.admin_token}"},
                         timeout=30).status_code


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"run.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"run.py did not answer /health in {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bus]:
    """`python run.py` exactly as `make run` starts it (SQLite, in-process workers, CSRF on), on a free port."""
    instance = tmp_path_factory.mktemp("e2e-instance")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "EVENT_LOG_URL", "REDIS_URL", "CELERY_BROKER_URL", "APP_ENV", "SECRET_KEY"}}
    env.update({"INSTANCE_DIR": str(instance), "PORT": str(port), "ADMIN_PASSWORD": ADMIN_PASSWORD,
                "LOG_LEVEL": "WARNING", "METRICS_FLUSH_S": "5"})
    log = instance / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        token = httpx.post(f"{url}/api/v1/security/login", timeout=30, json={
            "username": "admin", "password": ADMIN_PASSWORD, "provider": "db"}).json()["access_token"]
        users = {"Admin": "admin"}
        for role in ("Operator", "Viewer"):
            name = f"e2e-{role.lower()}-{uuid.uuid4().hex[:6]}"
            resp = httpx.post(f"{url}/api/v1/users", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                              json={"username": name, "password": USER_PASSWORD, "role": role, "tenants": ["default"]})
            assert resp.status_code == 201, resp.text
            users[role] = name
        yield Bus(url=url, admin_token=token, users=users)
    finally:
        proc.send_signal(signal.SIGINT)  # run.py's finally: stop the workers, flush the metric roll-ups
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        logger.info("run.py log:\n%s", log.read_text()[-4000:])


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright; a missing browser fails the run instead of skipping it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


LoginAs = Callable[[str], Any]


@pytest.fixture
def login_as(bus: Bus, browser: Any) -> Iterator[LoginAs]:
    """``login_as(role)``: a fresh browser page signed in through the console's login form."""
    contexts: list[Any] = []

    def sign_in(role: str) -> Any:
        context = browser.new_context(base_url=bus.url, viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/login/")
        page.fill("input[name=username]", bus.users[role])
        page.fill("input[name=password]", ADMIN_PASSWORD if role == "Admin" else USER_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_load_state()
        assert "/login" not in page.url, f"{role} could not log in"
        return page

    yield sign_in
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, name)``: a full-page PNG in tests/e2e/screenshots/ (git-ignored), for a human to look at."""

    def shoot(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shoot
