"""What the serving process is, as told by the server that started it.

gunicorn's `post_worker_init` hook (app/gunicorn_conf.py) and the development
server launcher (app/devserver.py) fill `server`; `GET /` reports it, so a
response always says which server and worker class produced it.
"""

from __future__ import annotations

server: dict[str, object] = {"server": "unknown"}
