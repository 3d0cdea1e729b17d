"""`flask notes export`: the app's own command, parsed with docopt (a
dependency published only as a source distribution)."""

import json

import click
from docopt import docopt

USAGE = """Export the notes as JSON.

Usage:
  export [--limit=<n>]

Options:
  --limit=<n>  Most notes to export [default: 100].
"""


def parse(argv):
    return docopt(USAGE, argv=argv)


def register(app):
    @app.cli.command("export", context_settings={"ignore_unknown_options": True})
    @click.argument("argv", nargs=-1)
    def export(argv):
        from notes.models import Note

        limit = int(parse(list(argv))["--limit"])
        click.echo(json.dumps([note.body for note in Note.query.limit(limit)]))
