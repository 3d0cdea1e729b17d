"""Your application's views. Replace this module with your own blueprints
(and register them in demo/factory.py): nothing else in the stack depends on
what is here. The demonstration endpoints live apart, in demo/demo.py."""

from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("views", __name__)


@bp.get("/")
def index():
    # Says nothing about the server: no versions, pids or hostnames.
    return jsonify(service="flask-concurrency", status="ok")
