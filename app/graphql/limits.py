"""Query limits: depth, aliases and tokens (strawberry's rules and extensions) and a cost limit (ours).

Cost counts the objects an operation may return: every field of an object type costs the product of
the ``limit`` arguments of the list fields around it. ``streams(limit: 100) { items { groups(limit: 50)
{ items { group } } } }`` costs 1 + 100 + 100 + 100 * 50 = 5,201. A ``limit`` given as a variable is read
from the operation's variables, an omitted one is the field's default. Introspection costs nothing.

Parsing and validation are cached (strawberry's ParserCache and ValidationCache: clients send the same
few documents again and again). The cost depends on the variables too, so it is checked per request,
after the (cached) validation and before execution.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_composite_type,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

CACHE_SIZE = 512  # distinct documents whose parse and validation are kept
LIMIT_ARG = "limit"
MAX_WALK_DEPTH = 64  # the depth limiter rejects far earlier; this only bounds the walk itself


def _limit_value(field: FieldNode, definition: Any, variables: Mapping[str, Any],
                 defaults: Mapping[str, Any]) -> int:
    """The ``limit`` a list field will be called with: literal, variable, variable default or field default."""
    for arg in field.arguments or ():
        if arg.name.value != LIMIT_ARG:
            continue
        value = arg.value
        if isinstance(value, IntValueNode):
            return max(int(value.value), 1)
        if isinstance(value, VariableNode):
            name = value.name.value
            given = variables.get(name, defaults.get(name))
            if isinstance(given, int) and not isinstance(given, bool):
                return max(given, 1)
    default = definition.args[LIMIT_ARG].default_value
    return default if isinstance(default, int) and default > 0 else 1


def operation_cost(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode,
                   variables: Mapping[str, Any]) -> int:
    """The cost of one operation of a (valid) document (see the module docstring)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = schema.get_root_type(operation.operation)
    defaults = {d.variable.name.value: int(d.default_value.value) for d in operation.variable_definitions or ()
                if isinstance(d.default_value, IntValueNode)}

    def walk(selection_set: SelectionSetNode | None, parent: Any, factor: int, seen: frozenset[str],
             depth: int) -> int:
        if selection_set is None or depth > MAX_WALK_DEPTH or not isinstance(parent, GraphQLObjectType):
            return 0
        total = 0
        for selection in selection_set.selections or ():
            if isinstance(selection, FieldNode):
                name = selection.name.value
                definition = parent.fields.get(name)
                if name.startswith("__") or definition is None:
                    continue  # introspection is free
                named = get_named_type(definition.type)
                if not is_composite_type(named):
                    continue
                total += factor
                inner = factor * _limit_value(selection, definition, variables, defaults) \
                    if LIMIT_ARG in definition.args else factor
                total += walk(selection.selection_set, named, inner, seen, depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                target = schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                total += walk(selection.selection_set, target, factor, seen, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in seen:
                    continue
                target = schema.get_type(fragment.type_condition.name.value)
                total += walk(fragment.selection_set, target, factor, seen | {name}, depth + 1)
        return total

    return walk(operation.selection_set, root, 1, frozenset(), 0)


class CostLimiter(SchemaExtension):
    """Refuses an operation costlier than ``max_cost`` with its variables; runs after (cached) validation."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        # ValidationCache (listed before) has just set the document's validation errors; an invalid
        # document is refused for those, and only a valid one is worth costing.
        document = context.graphql_document
        if not context.pre_execution_errors and document is not None:
            operation = get_operation_ast(document, context.operation_name)
            if operation is not None:
                cost = operation_cost(context.schema._schema, document, operation, context.variables or {})
                if cost > self.max_cost:
                    name = operation.name.value if operation.name else "anonymous"
                    context.pre_execution_errors = [GraphQLError(
                        f"operation {name!r} may return {cost} objects, more than the limit of {self.max_cost}:"
                        " ask for fewer items (limit) or fewer nested lists",
                        operation, extensions={"code": "query_too_costly", "status": 400,
                                               "details": {"cost": cost, "max_cost": self.max_cost}})]
        yield


def limit_extensions(config: Mapping[str, Any]) -> list[Callable[[], SchemaExtension]]:
    """Factories of the limit extensions (one instance per operation), configured from the app config.

    The rule classes are made once: ValidationCache keys on them, so per-request classes would never hit.
    """
    max_cost, max_tokens = int(config["GRAPHQL_MAX_COST"]), int(config["GRAPHQL_MAX_TOKENS"])
    rules = [depth_rule(int(config["GRAPHQL_MAX_DEPTH"]), None), aliases_rule(int(config["GRAPHQL_MAX_ALIASES"]))]
    return [
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        lambda: CostLimiter(max_cost),
    ]
