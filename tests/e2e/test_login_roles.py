"""Each role logs in to the console; what a role may not do is refused on the server, not only hidden."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Bus, LoginAs


def _csrf(page: Any) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token, "the page carries no CSRF token"
    return token


@pytest.mark.parametrize("role", ["Admin", "Operator", "Viewer"])
def test_each_role_logs_in_and_sees_the_dashboard_of_its_tenant(role: str, login_as: LoginAs) -> None:
    page = login_as(role)
    page.goto("/console/dashboard/")
    assert page.locator("h2").first.inner_text().startswith("Dashboard")
    assert page.locator("#current-tenant").inner_text().strip() == "default"
    page.wait_for_selector("#dash-status:text('live')")  # the Socket.IO session authenticated by the cookie


def test_a_viewers_posts_are_refused_on_the_server(bus: Bus, login_as: LoginAs) -> None:
    viewer = login_as("Viewer")
    viewer.goto("/console/streams/")
    name = f"viewer-made-{uuid.uuid4().hex[:6]}"
    # ...and the server refuses a Viewer's POST even with a valid session and CSRF token (a crafted request).
    resp = viewer.request.post("/console/streams/create", max_redirects=0,
                               form={"csrf_token": _csrf(viewer), "name": name, "partitions": "1"})
    assert resp.status in (302, 403), resp.status
    if resp.status == 302:
        assert "/console/streams" not in resp.headers.get("location", "")  # sent away, not to the new stream
    assert bus.status(f"/streams/{name}") == 404

    # The same request from an Operator creates the stream: the refusal was the role, not the request.
    operator = login_as("Operator")
    operator.goto("/console/streams/")
    resp = operator.request.post("/console/streams/create", max_redirects=0,
                                 form={"csrf_token": _csrf(operator), "name": name, "partitions": "1"})
    assert resp.status == 302
    assert bus.status(f"/streams/{name}") == 200


def test_the_tenant_switcher_is_a_csrf_checked_post(bus: Bus, login_as: LoginAs) -> None:
    viewer = login_as("Viewer")
    viewer.goto("/console/dashboard/")
    forged = viewer.request.post("/console/tenant/", form={"tenant": "default"}, max_redirects=0)
    assert forged.status == 400  # no CSRF token
    viewer.click("#tenant-switcher > a")
    viewer.click("button.tenant-choice[data-tenant='default']")
    viewer.wait_for_url("**/console/dashboard/**")
    assert viewer.locator("#current-tenant").inner_text().strip() == "default"



@pytest.mark.parametrize("role", ["Operator", "Viewer"])
def test_only_the_admin_manages_users(role: str, bus: Bus, login_as: LoginAs) -> None:
    """API.md: an Operator runs the bus but does no user admin; a Viewer reads the bus only."""
    page = login_as(role)
    page.goto("/console/dashboard/")
    assert page.locator("a.dropdown-toggle", has_text="Security").count() == 0  # no user admin menu
    assert page.request.get("/users/list/", max_redirects=0).status in (302, 403)
    name = f"made-by-{role.lower()}-{uuid.uuid4().hex[:6]}"
    page.request.post("/users/add", max_redirects=0, form={
        "csrf_token": _csrf(page), "first_name": "x", "last_name": "y", "username": name, "email": f"{name}@x.io",
        "active": "y", "roles": "1", "password": "Passw0rd-123", "conf_password": "Passw0rd-123"})
    assert name not in {u["username"] for u in bus.api("GET", "/users?limit=500", status=200)["items"]}
