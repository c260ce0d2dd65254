#!/usr/bin/env bash
# Prepares a GPU run (here, before calling the device tool): onnxruntime-gpu in parts
# (../shared/gpu/pack.sh) and, in .gpu-parts/kit, what benchmarks/gpu_run.sh reads from
# ../shared (the GPU machine gets the checkout only): the tennis frames, the reference trace and
# make_checkpoint.py with its manifest. Prints the device calls to make, back to back (the
# machine goes back after 30 s idle): one per part, the last one running gpu_run.sh.
#   bash benchmarks/gpu_kit.sh [SHARED]   (SHARED: default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${1:-../shared}"
DEST=.gpu-parts
mkdir -p .git/info
grep -qx "/$DEST/" .git/info/exclude 2>/dev/null || echo "/$DEST/" >>.git/info/exclude
[ -f "$DEST/part0" ] || bash "$SHARED/gpu/pack.sh" "$DEST" >/dev/null
mkdir -p "$DEST/kit/tennis"
cp "$SHARED"/reference/{make_checkpoint.py,siammask_vot_manifest.json,tennis_trace.json} "$DEST/kit/"
cp "$SHARED"/reference/tennis/*.jpg "$DEST/kit/tennis/"
parts=$(ls "$DEST"/part* | sort -V)
last=$(echo "$parts" | tail -n 1)
echo "kit ready: $(du -sh "$DEST/kit" | cut -f1) in $DEST/kit, parts: $(echo $parts)"
echo "device calls, one after another:"
for part in $parts; do
    if [ "$part" != "$last" ]; then
        echo "  run command='mkdir -p /tmp/parts && cp $part /tmp/parts/' carry=[\"$part\"]"
    fi
done
echo "  run command='mkdir -p /tmp/parts && cp $last /tmp/parts/ && bash benchmarks/gpu_run.sh /tmp/parts'" \
    "carry=[\"$last\", \"$DEST/zstd\", \"$DEST/wheels\", \"$DEST/unpack.sh\", \"$DEST/kit\"] timeout_s=540"
