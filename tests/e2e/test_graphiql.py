"""GraphiQL in a real browser with every request off this server refused: it must render from the bus alone."""
from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Bus


def test_graphiql_renders_with_no_request_leaving_the_bus(bus: Bus, browser: Any) -> None:
    context = browser.new_context(base_url=bus.url)
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_bus(route: Any) -> None:
        if route.request.url.startswith(bus.url):
            route.continue_()
        else:  # what a machine without internet access would see
            elsewhere.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", only_the_bus)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/graphql")
        page.wait_for_selector(".graphiql-execute-button")  # React and GraphiQL loaded and rendered the editor
        assert page.locator(".graphiql-query-editor").count() == 1
        assert elsewhere == [] and errors == []
    finally:
        context.close()
