"""The Flask application package.

Kept free of imports on purpose: gunicorn's config (app.gunicorn_conf) imports
app.settings, app.logs, app.lifecycle and app.metrics_master in the master
process, and anything imported there is imported before gevent's worker
monkey-patches the standard library: they use the standard library and
gunicorn only (logging.config also imports app.jsonlog, python-json-logger,
which makes no lock or thread). The app itself (Flask, Werkzeug, the views,
prometheus_client) lives in app.factory and app.metrics and is loaded in each
worker, after the patching.
"""
