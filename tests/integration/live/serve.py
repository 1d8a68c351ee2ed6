"""Serve the bus on an existing, initialised database in a process of its own (the cross-process tests).

``python -m tests.integration.live.serve DATABASE_URL REDIS_URL`` prints its port, then serves until killed.
"""
from __future__ import annotations

import sys

from werkzeug.serving import make_server


def main() -> None:
    """Build the app like a production web process (no migration, no bootstrap) and serve it."""
    from app import create_app

    database_url, redis_url = sys.argv[1], sys.argv[2]
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_url, "EVENT_LOG_URL": "sql",
                                 "REDIS_URL": redis_url, "LIVE_POLL_S": 60.0})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
