#!/usr/bin/env bash
# The whole job end to end, offline: a local sample image host, the service, a CSV
# uploaded with curl, its progress, and the results CSV.
set -euo pipefail
BIN=.venv/bin
DATA=$(mktemp -d -t imgsvc-demo-XXXXXX)
SERVICE=http://127.0.0.1:8800
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

$BIN/python scripts/sample_host.py --port 8801 --products 4 --per-product 3 \
    --csv "$DATA/products.csv" >/dev/null &
IMGSVC_ALLOW_PRIVATE_URLS=1 IMGSVC_DATA_DIR="$DATA/storage" \
    $BIN/imgsvc serve --port 8800 >"$DATA/service.log" 2>&1 &
until curl -sf $SERVICE/readyz >/dev/null && curl -s localhost:8801 >/dev/null; do sleep 0.2; done

echo "== the CSV"
cat "$DATA/products.csv"
echo
echo "== curl -F file=@products.csv $SERVICE/api/upload"
ANSWER=$(curl -sS -F file=@"$DATA/products.csv" $SERVICE/api/upload)
echo "$ANSWER"
ID=$(echo "$ANSWER" | $BIN/python -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')
echo
echo "== progress (GET /api/status/$ID)"
while :; do
    STATUS=$(curl -sS $SERVICE/api/status/"$ID")
    echo "$STATUS" | $BIN/python -c 'import json, sys; s = json.load(sys.stdin); p = s["progress"]
print("  {:<10} {:>5.1f}%  {}".format(s["status"], p["percentage"], s["message"]))'
    case "$STATUS" in *'"status":"completed"'*|*'"status":"failed"'*|*'"status":"cancelled"'*) break;; esac
    sleep 0.3
done
echo
echo "== curl $SERVICE/api/download/$ID"
curl -sS $SERVICE/api/download/"$ID"
