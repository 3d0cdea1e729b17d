#!/bin/sh
# Run by the official image's entrypoint: the upstream's servers, which
# conf.d/app.conf includes: the service name, so every replica
# (nginx/rotation.sh, their one writer, now and at each deploy).
exec rotation write service
