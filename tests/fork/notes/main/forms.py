from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class NoteForm(FlaskForm):
    body = TextAreaField("Say something", validators=[DataRequired(), Length(min=1, max=280)])
    submit = SubmitField("Post")
