#!/usr/bin/env bash
# The whole job end to end, offline, in one command: a local sample image host, the
# service, a CSV submitted with `imgsvc submit --watch` (a live progress bar fed by the
# server-sent event stream), and the results CSV.
set -euo pipefail
BIN=.venv/bin
DATA=$(mktemp -d -t imgsvc-demo-XXXXXX)
PORT=${DEMO_PORT:-8800}
HOST_PORT=${DEMO_HOST_PORT:-8801}
SERVICE=http://127.0.0.1:$PORT
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

$BIN/python scripts/sample_host.py --port "$HOST_PORT" --products 4 --per-product 3 \
    --csv "$DATA/products.csv" >/dev/null &
IMGSVC_DATA_DIR="$DATA/storage" $BIN/imgsvc serve --port "$PORT" --allow-private-urls \
    --log-format json >"$DATA/service.log" 2>&1 &
for _ in $(seq 100); do
    curl -sf "$SERVICE/readyz" >/dev/null && curl -s "127.0.0.1:$HOST_PORT" >/dev/null && break
    sleep 0.2
done
curl -sf "$SERVICE/readyz" >/dev/null || { echo "the service did not start:"; cat "$DATA/service.log"; exit 1; }

echo "== the CSV ($DATA/products.csv)"
cat "$DATA/products.csv"
echo
echo "== imgsvc submit products.csv --watch --server $SERVICE"
OUT=$($BIN/imgsvc submit "$DATA/products.csv" --watch --server "$SERVICE" | tee /dev/stderr)
echo
DOWNLOAD=$(echo "$OUT" | sed -n 's/^results CSV: //p')
echo "== curl $DOWNLOAD"
curl -sS "$DOWNLOAD"
if [ -t 0 ]; then
    echo
    echo "Open $SERVICE/ in a browser to see the page; press Enter to stop the demo."
    read -r _
fi
