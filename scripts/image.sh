#!/usr/bin/env bash
# `make image`: build the Dockerfile with buildah, without a container engine or a registry.
#
# With no BASE_IMAGE, the base is made here from Debian's own packages (mmdebstrap: bookworm,
# minbase, python3 and its venv module, CA certificates) and kept as $LOCAL_BASE, so later
# builds reuse it. BASE_IMAGE=python:3.11-slim builds what `docker build` builds, where a
# registry can be reached. pip inside the build uses this machine's pip settings and
# certificates, mounted as build secrets and never stored in the image.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/imgsvc:latest}
LOCAL_BASE=localhost/imgsvc-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
DEBIAN=http://deb.debian.org/debian

make_base() {
    local work container
    work=$(mktemp -d -t imgsvc-base-XXXXXX)
    trap 'rm -rf "$work"' RETURN
    echo "== making $LOCAL_BASE from Debian's packages (once)"
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/base.tar" \
        "deb $DEBIAN bookworm main" "deb $DEBIAN bookworm-updates main" \
        "deb $DEBIAN-security bookworm-security main" </dev/null
    container=$(buildah from scratch)
    buildah add --quiet "$container" "$work/base.tar" /
    buildah config --cmd /bin/bash "$container"
    buildah commit --quiet "$container" "$LOCAL_BASE" >/dev/null
    buildah rm "$container" >/dev/null
}

if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    make_base
fi

# pip's settings and the certificate bundle that reach the package index from here, as the
# build secrets the Dockerfile's pip steps mount (read-only, for those steps only).
secrets=()
if [ -f /etc/pip.conf ]; then
    secrets+=(--secret id=pip.conf,src=/etc/pip.conf --build-arg PIP_CONFIG_FILE=/run/secrets/pip.conf)
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    secrets+=(--secret id=ca.crt,src=/etc/ssl/certs/ca-certificates.crt --build-arg PIP_CERT=/run/secrets/ca.crt)
fi

echo "== building $IMAGE from $BASE_IMAGE"
start=$(date +%s)
# --isolation chroot: RUN steps need no container runtime. --format docker keeps HEALTHCHECK.
buildah build --isolation chroot --format docker --layers \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${secrets[@]}" \
    --tag "$IMAGE" .
echo "== built $IMAGE in $(( $(date +%s) - start )) s: $(buildah images --format '{{.Size}}' "$IMAGE")"
