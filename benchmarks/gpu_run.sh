#!/usr/bin/env bash
# The GPU run, on the GPU machine (the device tool's `run`, from the repo root) once
# benchmarks/gpu_kit.sh's parts are gathered in PARTS: installs onnxruntime-gpu, writes the
# seed-0 checkpoint and its exports once, then measures in order of priority, each step bounded
# in time and logged to $OUT/<step>.log (what the device tool brings back):
#   env     the GPU, onnxruntime's version and providers, torch
#   models  the checkpoint and its exports (fp32 / fp16, If and split layouts)
#   check   siamedge check --providers cuda --targets 4: the fp32 export with the defaults (then
#           with TF32 on), the fp16 export (which runs with use_tf32 on; then with HEURISTIC
#           cuDNN algorithm search, NHWC convolutions, NHWC with the bias fused), fp32 with the
#           bias fused (parity), fp32 with NHWC, the split export with model.cuda_graph (4
#           targets, then 1: the graph of each batch size), builtin
#   gpu     benchmarks/gpu.py: the README's table
#   profile benchmarks/node_profile.py: the fp32 and fp16 exports' track step node by node on
#           CUDA, 1 and 4 targets (how much of the step is issuing kernels)
#   nhwc    benchmarks/gpu.py at 1080p, CUDA columns only, with cuda_prefer_nhwc and
#           cuda_fuse_conv_bias (one kernel per fp16 convolution instead of three?)
#   drift   benchmarks/trace_drift.py: every configuration against the original's trace
#   [STEPS="check gpu"] bash benchmarks/gpu_run.sh PARTS | --installed
# STEPS: the measuring steps to run, in this order (default: check gpu profile nhwc drift); env
# and models always run.
# --installed: onnxruntime (GPU or not) is importable already; how the script is tried on a
# machine without a GPU (PYTHON=.venv/bin/python OUT=/tmp/x bash benchmarks/gpu_run.sh --installed).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-run}"
KIT="${KIT:-.gpu-parts/kit}"
MODELS="${MODELS:-/tmp/gpu-models}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" "$MODELS"
if [ "${1:-}" != "--installed" ]; then
    exports=$(bash .gpu-parts/unpack.sh .gpu-parts "${1:-/tmp/parts}") || {
        echo "unpacking onnxruntime-gpu failed"
        exit 1
    }
    eval "$exports"
fi
export PYTHONUNBUFFERED=1

step() { # step NAME LIMIT_S COMMAND...: run it bounded, appending to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    echo "== $name: ${*//$'\n'/; }" | tee -a "$OUT/$name.log"
    timeout -k 5 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - started)) s" | tee -a "$OUT/$name.log"
}

ENV_PY='import onnxruntime as o, torch
print("onnxruntime", o.__version__, o.get_available_providers())
print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
printf 'model:\n  cuda_graph: true\n' >"$MODELS/cuda-graph.yaml"
printf 'model:\n  cuda_tf32: true\n' >"$MODELS/tf32.yaml"
printf 'model:\n  cuda_conv_algo_search: HEURISTIC\n' >"$MODELS/heuristic.yaml"
printf 'model:\n  cuda_prefer_nhwc: true\n' >"$MODELS/nhwc.yaml"
printf 'model:\n  cuda_fuse_conv_bias: true\n' >"$MODELS/fuse.yaml"
printf 'model:\n  cuda_prefer_nhwc: true\n  cuda_fuse_conv_bias: true\n' >"$MODELS/nhwc-fuse.yaml"
STEPS=" ${STEPS:-check gpu profile nhwc drift} "
wanted() { [[ "$STEPS" == *" $1 "* ]]; }
check() { # check MODEL [ARGS...]: siamedge check on CUDA, 4 targets in one call
    local model=$1
    shift
    step check 150 "$PY" -m siamedge.cli check --model "$model" --providers cuda --targets 4 "$@"
}

step env 20 nvidia-smi -L
step env 60 "$PY" -c "$ENV_PY"
step models 120 "$PY" benchmarks/shared_reference.py "$MODELS" \
    --make-checkpoint "$KIT/make_checkpoint.py"
if wanted check; then
    check "$MODELS/fp32.onnx"
    check "$MODELS/fp32.onnx" --config "$MODELS/tf32.yaml"
    check "$MODELS/fp16.onnx"
    check "$MODELS/fp16.onnx" --config "$MODELS/heuristic.yaml"
    check "$MODELS/fp16.onnx" --config "$MODELS/nhwc.yaml"
    check "$MODELS/fp16.onnx" --config "$MODELS/nhwc-fuse.yaml"
    # A fused plan cuDNN cannot build is planned again with TF32 allowed: parity?
    check "$MODELS/fp32.onnx" --config "$MODELS/fuse.yaml"
    check "$MODELS/fp32.onnx" --config "$MODELS/nhwc.yaml"
fi
wanted gpu && step gpu 300 "$PY" benchmarks/gpu.py --models "$MODELS" --frames-dir "$KIT/tennis" \
    --make-checkpoint "$KIT/make_checkpoint.py"
if wanted profile; then
    for model in fp32 fp16; do
        step profile 90 "$PY" benchmarks/node_profile.py "$MODELS/$model.onnx" --provider cuda
    done
fi
wanted nhwc && step nhwc 150 "$PY" benchmarks/gpu.py --models "$MODELS" --frames-dir "$KIT/tennis" \
    --make-checkpoint "$KIT/make_checkpoint.py" --sizes 1080p --skip-cpu --skip-torch --skip-graph \
    --cuda-option cuda_prefer_nhwc=true --cuda-option cuda_fuse_conv_bias=true
wanted drift && step drift 200 "$PY" benchmarks/trace_drift.py --models "$MODELS" --reference "$KIT" \
    --make-checkpoint "$KIT/make_checkpoint.py"
if wanted check; then
    check "$MODELS/fp32-split.onnx" --config "$MODELS/cuda-graph.yaml"
    # one target replays the graph captured for a batch of one (its own gpu_graph_id)
    check "$MODELS/fp32-split.onnx" --config "$MODELS/cuda-graph.yaml" --targets 1
    check builtin
fi

for name in env check gpu profile nhwc drift; do
    [ -f "$OUT/$name.log" ] || continue
    echo "---- $name.log (end)"
    grep -v '^== \|INFO\|^measured\|^ran \|cudnn_frontend' "$OUT/$name.log" | tail -n 30
done
