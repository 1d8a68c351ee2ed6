"""Confluent Schema Registry errors: an HTTP status plus Confluent's ``error_code`` and message texts."""
from __future__ import annotations

from app.services.errors import ServiceError

# Confluent's codes (io.confluent.kafka.schemaregistry.rest.exceptions.Errors).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_COMPATIBILITY_NOT_CONFIGURED = 40408
SUBJECT_MODE_NOT_CONFIGURED = 40409
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_MODE = 42204
OPERATION_NOT_PERMITTED = 42205
REFERENCE_EXISTS = 42206
ID_DOES_NOT_MATCH = 42207
INVALID_SUBJECT = 42208
UNAUTHORIZED = 40101
FORBIDDEN = 40301
STORE_ERROR = 50001


class RegistryError(ServiceError):
    """A registry refusal: ``error_code`` is Confluent's, the HTTP status its first three digits."""

    def __init__(self, error_code: int, message: str, status: int | None = None) -> None:
        http = status or (error_code if error_code < 1000 else error_code // 100)
        super().__init__(message, code=str(error_code), status=http)
        self.error_code = error_code


def subject_not_found(subject: str) -> RegistryError:
    """40401."""
    return RegistryError(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")


def version_not_found(version: int | str) -> RegistryError:
    """40402."""
    return RegistryError(VERSION_NOT_FOUND, f"Version {version} not found.")


def schema_not_found(schema_id: int | None = None) -> RegistryError:
    """40403."""
    return RegistryError(SCHEMA_NOT_FOUND, "Schema not found" if schema_id is None else f"Schema {schema_id} not found")


def invalid_schema(message: str) -> RegistryError:
    """42201."""
    return RegistryError(INVALID_SCHEMA, f"Invalid schema: {message}")


def invalid_version(version: str) -> RegistryError:
    """42202."""
    return RegistryError(INVALID_VERSION, f"The specified version '{version}' is not a valid version id. Allowed "
                                          "values are between [1, 2^31-1] and the string \"latest\"")


def not_permitted(message: str) -> RegistryError:
    """42205."""
    return RegistryError(OPERATION_NOT_PERMITTED, message)
