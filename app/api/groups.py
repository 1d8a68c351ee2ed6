"""Placeholder until written."""
from __future__ import annotations

from app.api.base import BusApi


class GroupsApi(BusApi):
    """In progress."""

    resource_name = "groups"
