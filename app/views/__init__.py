"""Console views (Flask-AppBuilder): thin, they call app/services like the API does."""
