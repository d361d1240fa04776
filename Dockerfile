# imgsvc as one container: one process (uvicorn serving the app and its job workers),
# its data folder on a volume. Build: docker build -t imgsvc .
#
# BASE_IMAGE is any Debian-like image with python3 (3.11 or newer) and its venv module:
# python:3.11-slim by default, or a base made from Debian's own packages where no registry
# can be reached (`make image` makes one with mmdebstrap; see scripts/image.sh).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/imgsvc/bin:$PATH \
    IMGSVC_HOST=0.0.0.0 \
    IMGSVC_PORT=8000 \
    IMGSVC_DATA_DIR=/data

# jpegtran re-packs a JPEG input losslessly when that comes out smaller than a new encoding.
RUN apt-get update && apt-get install -y --no-install-recommends libjpeg-turbo-progs \
    && rm -rf /var/lib/apt/lists/*

# A user without a shell or a home of its own; it owns only the data folder. A fixed uid, so
# a bind-mounted folder can be given to it (chown 10001).
RUN groupadd --gid 10001 imgsvc \
    && useradd --uid 10001 --gid imgsvc --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin imgsvc \
    && mkdir /data && chown imgsvc:imgsvc /data

# A virtualenv in both bases: Debian's python3 refuses pip installs into the system
# (PEP 668), and python:3.11-slim's is the same path then.
RUN python3 -m venv /opt/imgsvc
WORKDIR /src
# Where the package index is reached only through a local pip.conf or certificate bundle,
# pass them as build secrets and name them to pip (scripts/image.sh does):
#   --secret id=pip.conf,src=/etc/pip.conf --build-arg PIP_CONFIG_FILE=/run/secrets/pip.conf
#   --secret id=ca.crt,src=/etc/ssl/certs/ca-certificates.crt --build-arg PIP_CERT=/run/secrets/ca.crt
# They are mounted for the pip steps only; the image keeps neither, only the paths.
ARG PIP_CONFIG_FILE
ARG PIP_CERT
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=pip.conf,required=false --mount=type=secret,id=ca.crt,required=false \
    mkdir imgsvc && touch imgsvc/__init__.py && pip install . && pip uninstall -y imgsvc
COPY imgsvc ./imgsvc
# The package is installed into the venv; its source is not needed at run time.
RUN --mount=type=secret,id=pip.conf,required=false --mount=type=secret,id=ca.crt,required=false \
    pip install --no-deps . && rm -rf /src
WORKDIR /data

USER imgsvc
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('IMGSVC_PORT', '8000')}/livez\", timeout=4)"]
# exec form: imgsvc is PID 1 and gets SIGTERM directly, finishing in-flight work.
CMD ["imgsvc", "serve", "--log-format", "json"]
