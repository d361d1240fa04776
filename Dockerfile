# imgsvc as one container: one process (uvicorn serving the app and its job workers),
# its data folder on a volume. Build: docker build -t imgsvc .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGSVC_HOST=0.0.0.0 \
    IMGSVC_PORT=8000 \
    IMGSVC_DATA_DIR=/data

# A user without a shell or a home of its own; it owns only the data folder.
RUN groupadd --system imgsvc && useradd --system --gid imgsvc --no-create-home imgsvc \
    && mkdir /data && chown imgsvc:imgsvc /data

WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir imgsvc && touch imgsvc/__init__.py && pip install . && pip uninstall -y imgsvc
COPY imgsvc ./imgsvc
RUN pip install --no-deps .

USER imgsvc
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('IMGSVC_PORT', '8000')}/livez\", timeout=4)"]
# exec form: uvicorn is PID 1 and gets SIGTERM directly, finishing in-flight work.
CMD ["imgsvc", "serve", "--log-format", "json"]
