# The app image: gunicorn serving the Flask app, as an unprivileged user.
#
# PYTHON_BASE_IMAGE is the official image on a connected machine; where no
# registry answers, scripts/ensure-base-images.sh builds a local stand-in and
# passes its name here (see README, "What the set-up does").
ARG PYTHON_BASE_IMAGE=python:3.13-slim

FROM ${PYTHON_BASE_IMAGE} AS build
# The lock to install: the benchmark lab's uWSGI peer builds this same image
# with requirements/bench.txt (the app's pins plus uWSGI).
ARG REQUIREMENTS=requirements/app.txt
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
COPY ${REQUIREMENTS} /tmp/requirements.txt
# Hash-checked and wheels only: the image gets exactly the locked artefacts
# and needs no compiler.
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt

FROM ${PYTHON_BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    APP_ENV=production
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
# The server that runs the app, then the app: a change to the app alone
# rebuilds only the last layers.
COPY serving/ /srv/serving/
COPY app/ /srv/app/
# The static files' content-hashed copies, gzipped beside them, and the
# manifest static_url_for() reads (flask-static-digest; docs/static.md), then
# bytecode: both now, because the root filesystem is read-only at run time.
# The digester is called directly, not through `flask digest compile`, which
# would make the app: an app that cannot load must reach the deploy's own
# check, which names the error, not fail the build.
RUN python3 -c "from flask_static_digest.digester import compile; compile('app/static/', 'app/static/', [], True, False)" \
    && python3 -m compileall -q /srv/serving /srv/app
# Where the app publishes its static files for nginx (a volume both mount).
RUN install -d -o 10001 -g 10001 /srv/static
# A fixed numeric id, so that the image needs no user database and file
# ownership on mounted volumes is predictable.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-m", "serving.healthcheck"]
CMD ["python3", "-m", "serving.serve"]
