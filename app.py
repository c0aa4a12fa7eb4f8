"""The WSGI application; ``python app.py`` runs the development server."""

from echo import create_app

app = create_app()

if __name__ == "__main__":
    from echo.devserver import serve

    serve(app)
