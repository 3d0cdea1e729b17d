from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from notes import db
from notes.main import bp
from notes.main.forms import NoteForm
from notes.models import Note


@bp.route("/", methods=["GET", "POST"])
@bp.route("/index", methods=["GET", "POST"])
@login_required
def index():
    form = NoteForm()
    if form.validate_on_submit():
        db.session.add(Note(body=form.body.data, author=current_user))
        db.session.commit()
        flash("Your note is saved.")
        return redirect(url_for("main.index"))
    notes = current_user.notes.order_by(Note.timestamp.desc()).limit(current_app.config["NOTES_PER_PAGE"]).all()
    return render_template("index.html", title="Home", form=form, notes=notes)


@bp.route("/about")
def about():
    return render_template("about.html", title="About", banner=current_app.config["NOTES_BANNER"])
