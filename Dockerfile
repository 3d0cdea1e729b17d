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
# Hash-checked: the image gets exactly the locked artefacts. Wheels where a
# package publishes one; a package published only as a source distribution
# (pure Python, as many small ones are) is built into a wheel here, in the
# build stage, and only its wheel reaches the runtime image, which has no
# compiler. One that needs a compiler (a C extension with no wheel for this
# platform) cannot be built here either: the build stops with one line naming
# it, after pip's own output.
RUN /opt/venv/bin/pip install --require-hashes --prefer-binary -r /tmp/requirements.txt >/tmp/pip.log 2>&1 \
    || { cat /tmp/pip.log >&2; \
         failed=$(sed -n '/Failed to build/{s/.*Failed to build \(installable wheels for some pyproject.toml based projects \)\{0,1\}(\{0,1\}\([A-Za-z0-9_.-]*\).*/\2/p;q;}' /tmp/pip.log); \
         echo "the image cannot be built: ${failed:-a locked package} has no wheel for this platform and its source does not build here (no compiler in the build stage): pin a version with a wheel, or build it in a stage of your own" >&2; \
         exit 1; }

FROM ${PYTHON_BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    APP_ENV=production
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
# The server that runs the app, then the app: every file of the checkout
# that is not the template's own (.dockerignore lists those): your package,
# its config module, its migrations, as they sit in your repository. A
# change to the app alone rebuilds only the last layers.
COPY serving/ /srv/serving/
COPY . /srv/
# The static files' content-hashed copies, gzipped beside them, and the
# manifest static_url_for() reads (flask-static-digest, where the app uses
# it; docs/static.md), for every package's static/ (serving/static.py), then
# bytecode: both now, because the root filesystem is read-only at run time.
RUN python3 -m serving.static digest \
    && python3 -m compileall -q /srv
# Where the app publishes its static files for nginx (a volume both mount).
RUN install -d -o 10001 -g 10001 /srv/static
# A fixed numeric id, so that the image needs no user database and file
# ownership on mounted volumes is predictable.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-m", "serving.healthcheck"]
CMD ["python3", "-m", "serving.serve"]
