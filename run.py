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
    port = int(app.config["PORT"])
    logger.info("APG Event Bus on http://127.0.0.1:%d (console at /login/)", port)
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
