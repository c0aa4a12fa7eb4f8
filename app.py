"""The WSGI application; ``python app.py`` runs the development server.

``python app.py MODULE:APP`` serves another app's endpoints the same way.
"""

import sys

from echo.app import create_app
from echo.server.settings import ConfigError

try:
    app = create_app()
    if __name__ == "__main__":
        from echo.server.devserver import load, serve

        serve(load(sys.argv[1]) if len(sys.argv) > 1 else app)
except ConfigError as error:  # one line, as gunicorn.conf.py prints it
    raise SystemExit(f"app.py: {error}") from None
