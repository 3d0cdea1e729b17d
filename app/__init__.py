"""The Flask application package.

Kept free of imports on purpose: gunicorn's config (app.gunicorn_conf) imports
app.settings in the master process, and anything imported there is imported
before gevent's worker monkey-patches the standard library. The app itself
(Flask, Werkzeug, the views) lives in app.factory and is loaded in each worker,
after the patching.
"""
