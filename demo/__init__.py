"""Your Flask application: the package a fork owns and edits.

What serves it (gunicorn, its workers, logging, metrics, the request id,
trusted proxies) is the `serving` package beside it, which reaches this one
only through `demo.wsgi:application`; nothing here imports `serving`.

Kept free of imports on purpose: under gevent, the worker monkey-patches the
standard library before it loads the app, and Flask must be imported after
that, never as a side effect of importing this package
(docs/concurrency.md#gevent-pitfalls).
"""
