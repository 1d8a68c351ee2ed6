"""The GraphQL schema of the bus: Query, Mutation, Subscription, with the limits the app config sets."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from app.graphql.context import OperationScope
from app.graphql.errors import is_unexpected
from app.graphql.limits import limit_extensions
from app.graphql.live import Subscription
from app.graphql.resolvers import Mutation, Query

logger = logging.getLogger(__name__)


class BusSchema(strawberry.Schema):
    """Strawberry's schema with the bus's error policy: every error carries a code; only surprises are logged."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            if is_unexpected(error):
                logger.error("graphql resolver failed", exc_info=error.original_error)
                continue
            if error.extensions is None or "code" not in error.extensions:
                if error.path is None:
                    # A document that does not parse or does not validate (API.md's 400 family).
                    code, status = ("malformed_query" if isinstance(error, GraphQLSyntaxError) else "invalid_query",
                                    400)
                else:
                    # Raised by GraphQL itself while executing (a value the schema cannot represent): ours.
                    code, status = "internal_error", 500
                    logger.error("graphql execution error at %s: %s", error.path, error.message)
                error.extensions = {**(error.extensions or {}), "code": code, "status": status}
            logger.debug("graphql error %s: %s", error.extensions.get("code"), error.message)


def build_schema(config: Mapping[str, Any]) -> strawberry.Schema:
    """A schema for one app: limits from its config; unexpected errors masked (their text may hold internals)."""
    return BusSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[OperationScope, *limit_extensions(config), lambda: MaskErrors(should_mask_error=is_unexpected)],
    )
