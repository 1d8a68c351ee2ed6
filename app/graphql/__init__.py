"""GraphQL at ``/graphql`` (strawberry): queries and mutations over HTTP, subscriptions over WebSocket.

Both on the app's own port: HTTP through strawberry's Flask view, the WebSocket upgrade through
``ws.GraphQLWebSocketMiddleware`` (see docs/graphql.md for why and how).
"""
from __future__ import annotations

from flask import Flask


def init_graphql(app: Flask) -> None:
    """Mount ``/graphql`` on ``app``: the schema (limits from its config), the HTTP view, the WebSocket middleware."""
    from app.extensions import csrf
    from app.graphql.http import graphql_view
    from app.graphql.schema import build_schema
    from app.graphql.ws import GraphQLWebSocketMiddleware

    schema = build_schema(app.config)
    app.extensions["graphql_schema"] = schema
    view = graphql_view(schema, bool(app.config["GRAPHQL_IDE"]))
    # Credentials come in the Authorization header only, never from the console's session cookie, so a
    # cross-site form cannot act for a logged-in user: CSRF tokens have nothing to protect here.
    csrf.exempt(view)
    app.add_url_rule("/graphql", view_func=view, methods=["GET", "POST"])
    app.wsgi_app = GraphQLWebSocketMiddleware(app.wsgi_app, app)  # type: ignore[method-assign]
