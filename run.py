"""Embedded default: ``python run.py`` migrates, initialises and serves the whole bus on one machine."""
from __future__ import annotations

import logging
import os

from app import create_app

logger = logging.getLogger("run")


def main() -> None:
    """Upgrade the database, create tenant ``default`` and user ``admin`` once, then serve."""
    from flask_migrate import upgrade

    from app.services.bootstrap import init_bus

    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # FAB logs every permission it creates on first start: hundreds of lines that hide the password.
    logging.getLogger("flask_appbuilder").setLevel(logging.WARNING)
    app = create_app()
    with app.app_context():
        upgrade()
        result = init_bus()
    if result.generated_password:
        # Shown once on first start (API.md); only its hash is stored.
        logger.warning("Created user 'admin' with password: %s", result.generated_password)
    from workers.embedded import EmbeddedWorkers, wants_embedded

    # No broker: the Celery worker (with the webhook dispatcher) and beat run in this process.
    workers = EmbeddedWorkers(app).start() if wants_embedded(app) else None
    port = int(app.config["PORT"])
    logger.info("APG Event Bus on http://127.0.0.1:%d (console at /login/)", port)
    try:
        from app.extensions import socketio

        # Socket.IO in threading mode on Werkzeug (websocket through simple-websocket): the embedded,
        # single-machine server; production runs gunicorn (README).
        socketio.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=port, use_reloader=False, debug=False,
                     allow_unsafe_werkzeug=True)
    finally:
        if workers is not None:
            workers.stop()
        from app.services.live_metrics import live

        lm = live(app)
        if lm is not None:
            lm.stop()  # the current minute's counts into the roll-ups: no hole in the chart after a restart


if __name__ == "__main__":
    main()
