#!/usr/bin/env bash
# What `make test` needs beyond Python packages: Debian's programs the tests start for real;
# with `bench`, what `make bench` needs; with `image`, what `make image` and `make imagetest`
# need.
# As root they are installed when missing; otherwise the one command to run is printed.
set -euo pipefail

# program -> the Debian package that ships it
declare -A NEEDED
case "${1:-tests}" in
tests)
    NEEDED=(
        [/usr/bin/chromium]=chromium  # the page test's browser
        [/usr/lib/postgresql/*/bin/initdb]=postgresql  # the many-process mode's database
        # `promtool check metrics` on a live scrape; the package also holds the Prometheus
        # server, which Debian starts after installing it where services can start.
        [/usr/bin/promtool]=prometheus
        [/usr/bin/jpegtran]=libjpeg-turbo-progs  # compress's lossless re-pack of a JPEG input
    ) ;;
bench)
    NEEDED=(
        [/usr/lib/postgresql/*/bin/initdb]=postgresql  # the processes section's database
        [/usr/bin/jpegtran]=libjpeg-turbo-progs  # bench_images.py's lossless re-pack figures
    ) ;;
image)
    NEEDED=(
        [/usr/bin/buildah]=buildah  # builds the Dockerfile without a container engine
        [/usr/bin/mmdebstrap]=mmdebstrap  # makes the base image from Debian's packages
        [/usr/bin/podman]=podman  # runs the built image
        [/usr/sbin/runc]=runc  # the runtime podman uses here (scripts/imagetest.py says why)
    ) ;;
*) echo "usage: $0 [tests|bench|image]" >&2; exit 2 ;;
esac

missing=()
for program in "${!NEEDED[@]}"; do
    compgen -G "$program" >/dev/null || missing+=("${NEEDED[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "this needs Debian's ${missing[*]}: run  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian's ${missing[*]} (once)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
