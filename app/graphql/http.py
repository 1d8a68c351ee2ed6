"""``/graphql`` over HTTP: strawberry's Flask view, authenticated per request like the REST API."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Request, Response
from strawberry.flask.views import GraphQLView

from app.graphql.context import BusContext

# GraphiQL's scripts and styles come from this server (static/vendor/graphiql), not from unpkg.com: the page works
# where the bus has no internet access, and a CDN outage or compromise cannot reach it. The files are npm's own,
# byte for byte, so the page's integrity (SRI) hashes still hold. A strawberry upgrade that changes these URLs
# leaves the CDN in the page, which test_graphiql_is_served_without_a_cdn catches.
_CDN = "https://unpkg.com/"
_LOCAL = "{{ url_for('static', filename='vendor/graphiql/FILE') }}"  # the page is rendered as a Jinja template
_IDE_ASSETS = {
    "react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom.production.min.js",
    "js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "plugin-explorer.umd.js",
}


class BusGraphQLView(GraphQLView):
    """Queries (GET or POST) and mutations (POST); credentials come from the Authorization header only."""

    @property
    def graphql_ide_html(self) -> str:
        """strawberry's GraphiQL page (a Jinja template), its assets pointed at this server's copies."""
        html = super().graphql_ide_html
        for cdn_path, local in _IDE_ASSETS.items():
            html = html.replace(_CDN + cdn_path, _LOCAL.replace("FILE", local))
        return html

    def get_context(self, request: Request, response: Response) -> BusContext:  # type: ignore[override]
        return BusContext()

    def encode_json(self, data: object) -> bytes:
        # orjson like the REST API: fast, and datetimes already arrive as RFC 3339 strings.
        return orjson.dumps(data)

    def dispatch_request(self) -> Any:
        response = super().dispatch_request()
        if isinstance(response, Response) and response.status_code >= 400 and response.mimetype == "text/plain":
            # Requests strawberry refuses before executing (malformed JSON, no query, a mutation over GET):
            # answer in GraphQL's error shape, with a code like every other error of the bus.
            message = response.get_data(as_text=True)
            body = {"errors": [{"message": message, "extensions": {"code": "bad_request",
                                                                   "status": response.status_code}}]}
            return Response(orjson.dumps(body), status=response.status_code, mimetype="application/json",
                            headers={k: v for k, v in response.headers.items() if k.lower() == "allow"})
        return response


def graphql_view(schema: Any, graphiql: bool) -> Any:
    """The view function to mount at ``/graphql``."""
    return BusGraphQLView.as_view("graphql", schema=schema, graphql_ide="graphiql" if graphiql else None)
