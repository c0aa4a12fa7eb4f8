"""The WSGI application; ``python app.py`` runs the development server."""

from echo import create_app
from echo.config import ConfigError

try:
    app = create_app()
    if __name__ == "__main__":
        from echo.devserver import serve

        serve(app)
except ConfigError as error:  # one line, as gunicorn.conf.py prints it
    raise SystemExit(f"app.py: {error}") from None
