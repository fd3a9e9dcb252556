#!/usr/bin/env bash
# A live shadow run: the default model (v1.2.0) scores N real photos from the BIQ set while a
# candidate (default: v2.0.0) judges every one of them on the shadow thread; then
# `imagegate shadow report` prints the decision confusion and per-reason agreement.
# Figures, not pass/fail. The photos are read where they lie (never copied into the repo).
#
#   bench/shadow_run.sh [N] [CANDIDATE_WEIGHTS]      (IMAGEGATE_DATASETS_DIR or BIQ_DIR=... elsewhere)
#
# It uses (and first empties) Redis database 14 of the local stack (SHADOW_RUN_REDIS_DB).
#
# Needs the local stack (started here if it is not running). Output: the report on stdout; the
# JSON report and the worker log in $TMPDIR. Photos go in as gallery images (`--role gallery`):
# the BIQ photos are scenes, not packshots, so `main`'s white-background rule would reject all.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
CANDIDATE=${2:-model/weights/imagegate-quality-v2.pt}
BIQ_DIR=${BIQ_DIR:-${IMAGEGATE_DATASETS_DIR:-../shared/datasets}/biq2021-ss03-train/images}  # as training/data.py
PY=.venv/bin
[ -d "$BIQ_DIR" ] || { echo "shadow_run: no photos at $BIQ_DIR (set BIQ_DIR)" >&2; exit 2; }
BIQ_DIR=$(cd "$BIQ_DIR" && pwd)

deploy/local/stack start >/dev/null
eval "$(deploy/local/stack env | sed 's/^/export /')"
run=shadowrun-$(date +%s)
export IMAGEGATE_TOPIC_IN=$run.in IMAGEGATE_TOPIC_OUT=$run.out IMAGEGATE_TOPIC_DLQ=$run.dlq \
       IMAGEGATE_GROUP_ID=$run IMAGEGATE_TOPIC_PARTITIONS=2 \
       IMAGEGATE_ALLOWED_SCHEMES='["file"]' IMAGEGATE_FILE_ROOT="$BIQ_DIR" \
       IMAGEGATE_SHADOW_MODEL_PATH="$CANDIDATE" IMAGEGATE_SHADOW_SAMPLE=1.0 \
       IMAGEGATE_SHADOW_TOPIC=$run.shadow IMAGEGATE_SHADOW_QUEUE=4096 \
       IMAGEGATE_METRICS_PORT=${IMAGEGATE_METRICS_PORT:-9471} IMAGEGATE_LOG_EVENTS=false
# A Redis database of its own, emptied first: a cache hit from an earlier run carries no pixels,
# so the candidate model would have nothing to judge for those photos (counted as skipped).
export IMAGEGATE_REDIS_URL="${IMAGEGATE_REDIS_URL%/*}/${SHADOW_RUN_REDIS_DB:-14}"
$PY/python -c "import os, redis; redis.Redis.from_url(os.environ['IMAGEGATE_REDIS_URL']).flushdb()"
$PY/imagegate topics --replication-factor 1 >/dev/null

log=$(mktemp -t shadow-worker.XXXX.log)
$PY/imagegate-worker >"$log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT

# the first N photos by name, the same on every run
ls "$BIQ_DIR" | sort | awk -v n="$N" "NR<=n" | sed "s|^|$BIQ_DIR/|" \
  | $PY/imagegate publish --via file --root "$BIQ_DIR" --role gallery - >/dev/null
t0=$(date +%s)
metric() {  # the sum of a counter's samples whose line starts with $1, as an integer
  curl -s "127.0.0.1:$IMAGEGATE_METRICS_PORT/metrics" | grep -F "$1" | grep -v '^#' | awk '{s+=$2} END {printf "%d", s}'
}
# bounded: at most 2 h; every sample ends scored, dropped, skipped or error
while [ "$(metric 'imagegate_shadow_events_total{')" -lt "$N" ]; do
  [ $(( $(date +%s) - t0 )) -lt 7200 ] || { echo "shadow_run: not done after 2 h; worker log: $log" >&2; exit 1; }
  kill -0 $worker 2>/dev/null || { echo "shadow_run: worker exited; log: $log" >&2; exit 1; }
  sleep 5
done
for o in scored dropped skipped error; do
  echo "shadow samples $o: $(metric "imagegate_shadow_events_total{outcome=\"$o\"}")" >&2
done
echo "shadow_run: $N photos, default and shadow scored in $(( $(date +%s) - t0 )) s (worker log: $log)" >&2
json=${log%.log}.json  # beside the log, not in the repository: its examples carry local file paths
$PY/imagegate shadow report --json --examples 5 > "$json"
echo "shadow_run: JSON report in $json" >&2
$PY/imagegate shadow report --examples 5
