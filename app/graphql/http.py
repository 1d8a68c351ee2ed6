"""``/graphql`` over HTTP: strawberry's Flask view, authenticated per request like the REST API."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Request, Response
from strawberry.flask.views import GraphQLView

from app.graphql.context import BusContext


class BusGraphQLView(GraphQLView):
    """Queries (GET or POST) and mutations (POST); credentials come from the Authorization header only."""

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
