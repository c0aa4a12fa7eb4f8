"""The WSGI application; ``python app.py`` runs the development server."""

from echo.app import create_app
from echo.server.settings import ConfigError

try:
    app = create_app()
    if __name__ == "__main__":
        from echo.server.devserver import serve

        serve(app)
except ConfigError as error:  # one line, as gunicorn.conf.py prints it
    raise SystemExit(f"app.py: {error}") from None
