"""Extension singletons, unbound: ``create_app`` binds them. Imports nothing from ``app``.

Flask-AppBuilder is the exception: it keeps registered views on its instance, so ``create_app``
makes one per app and it is reached as ``current_app.appbuilder``.
"""
from __future__ import annotations

from flask_appbuilder.models.sqla.base import SQLA
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

db = SQLA()
migrate = Migrate()
csrf = CSRFProtect()
