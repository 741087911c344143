# Flareship's image: `flareship serve` as a non-root user, SQLite on a volume (docs/deploy.md).
# Any Debian-like Python 3.11+ base works; CI builds it on a debootstrapped Debian with
# `--build-arg BASE=...` (scripts/build-image.sh), since no image registry is reachable there.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/flareship
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
# A regular (not editable) install: the final stage copies the virtualenv alone, without the
# installers (nothing imports setuptools or pip at run time).
RUN /opt/flareship/bin/pip install --no-compile . \
 && /opt/flareship/bin/pip uninstall --yes --quiet setuptools pip \
 && find /opt/flareship -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/flareship/bin/python -m compileall -q /opt/flareship/lib

FROM ${BASE}
ARG UID=10001
RUN useradd --system --uid "${UID}" --user-group --home-dir /var/lib/flareship --create-home \
        --shell /usr/sbin/nologin flareship \
 && install -d -o flareship -g flareship -m 0750 /var/lib/flareship/data
COPY --from=build /opt/flareship /opt/flareship
COPY app.yml /var/lib/flareship/app.yml
ENV PATH=/opt/flareship/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_URL=sqlite:////var/lib/flareship/data/flareship.db \
    LOG_FORMAT=json
WORKDIR /var/lib/flareship
VOLUME ["/var/lib/flareship/data"]
USER flareship
EXPOSE 8000
# The base may have no curl: ask /healthz with the interpreter the image already carries.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["flareship", "serve"]
