#!/usr/bin/env bash
# What `make test` needs beyond Python packages: Debian's programs the tests start for real.
# As root they are installed when missing; otherwise the one command to run is printed.
set -euo pipefail

# program the tests run -> the Debian package that ships it
declare -A NEEDED=(
    [/usr/bin/chromium]=chromium  # the page test's browser
    [/usr/bin/jpegtran]=libjpeg-turbo-progs  # compress's lossless re-pack of a JPEG input
)

missing=()
for program in "${!NEEDED[@]}"; do
    [ -x "$program" ] || missing+=("${NEEDED[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "make test needs Debian's ${missing[*]}: run  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian's ${missing[*]} for the tests (once)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
