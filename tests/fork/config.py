"""The notes app's settings, as a Flask app of this layout usually keeps
them: one class, read from the environment, with fallbacks for a laptop."""

import os

basedir = os.path.abspath(os.path.dirname(__file__))


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "you-will-never-guess"
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(basedir, "notes.db")
    NOTES_PER_PAGE = int(os.environ.get("NOTES_PER_PAGE") or 20)
    NOTES_BANNER = os.environ.get("NOTES_BANNER") or ""
