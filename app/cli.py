"""``flask bus ...`` commands: first-start set-up and maintenance."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

bus_cli = AppGroup("bus", help="APG Event Bus administration.")


@bus_cli.command("init")
@click.option("--admin-password", envvar="ADMIN_PASSWORD", default=None, help="Password of user admin.")
def init_command(admin_password: str | None) -> None:
    """Create roles, permissions, tenant 'default' and user 'admin' (safe to run again)."""
    from app.services.bootstrap import init_bus

    result = init_bus(admin_password)
    if result.generated_password:
        # Printed once, on purpose: the operator needs it and it is stored only as a hash.
        click.echo(f"Created user 'admin' with password: {result.generated_password}")
    elif result.created_admin:
        click.echo("Created user 'admin' with ADMIN_PASSWORD.")
    else:
        click.echo("Bus initialised; user 'admin' exists.")


@bus_cli.command("retention")
def retention_command() -> None:
    """Drop events older than their stream's retention (SQL event log)."""
    from app.services.event_log import event_log

    dropped = event_log().enforce_retention()
    click.echo(f"dropped {dropped} events")


def register_cli(app: Flask) -> None:
    """Attach the ``bus`` command group."""
    app.cli.add_command(bus_cli)
