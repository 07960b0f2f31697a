#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one run on one H100/H200, written to one JSON.
#
#   benchmarks/gpu_suite.sh [--quick] [--out FILE]     # on the GPU machine, from the repository root
#   benchmarks/gpu_suite.sh --dry-run [--out FILE]     # on a CPU: the same runs at the tiny size (CI)
#   benchmarks/gpu_suite.sh ... --only REGEX           # only the rows whose name matches (bash regex)
#
# The CogVideoX-5B architecture with random weights (no downloads): timings and memory are the real model's,
# outputs are noise. Runs, in order: 49x480x720 inference with guidance (stock CogVideoXPipeline and VIVID,
# same process), without guidance, with the fast options, the 24 GB memory mode, each cache; one LoRA training
# step (stock vs VIVID, gradient checkpointing, MFU; also a joint keyframe training step, bf16 autocast, its blocks
# checkpointed with the joint attention); a long edit at two lengths. Then Wan2.1-1.3B and -14B
# (benchmarks/bench_wan_gpu.py, random weights, through the Wan specification) at 81x480x832: inference with and
# without guidance (stock WanPipeline and VIVID, same process), one LoRA training step with gradient
# checkpointing. Then Wan2.1-VACE-1.3B at 81x480x832 (random weights): vivid's edit beside the stock WanVACEPipeline
# (benchmarks/bench_vace_gpu.py: per-step time, peak memory, overhead ratio). Then `vivid mask`'s SAM 2.1
# hiera-large and SAM 3 trackers (random weights, 640x272 bikes at 250 and 1000 frames: masks per second, peak
# memory); then each speed and memory flag of `vivid edit` through its own loading code on the tiny CogVideoX and
# Wan2.1 (benchmarks/bench_edit_options.py: the path, not a figure). A Wan edit (the tiny Wan, loaded by `vivid
# edit`'s code) under model and under sequential CPU offload, beside the plain one, in the dry run too
# (benchmarks/bench_wan_offload.py). Then the training paths only a GPU takes (benchmarks/check_training_gpu_paths.py):
# 20 fp16 steps with one forced gradient overflow, `vivid data embed-captions` on cuda for both bases. The joint
# keyframe pass of `--long-mode parallel` at full size (benchmarks/bench_joint_keyframes.py --full-size: one forward of
# 16 keyframes of CogVideoX-5B at 480x720 and Wan2.1-1.3B at 480x832, random weights, full extended attention and
# AAS, one batch and in groups of 4: time and peak memory), and a 2-process `--long-mode parallel` edit
# (benchmarks/bench_long.py under accelerate launch, one GPU each; one `skipped` line below 2 GPUs). --quick keeps
# the first two, the training step, one long length, the Wan, VACE and mask rows and the training paths, with fewer
# steps.
#
# What it needs beyond a PyTorch with CUDA: this package's dependencies. Where `import diffusers` fails, they are
# installed from wheels in $VIVID_WHEELS (default .whl/, see benchmarks/README or docs/performance.md) without the
# network, else from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
out=gpu_suite.json
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) mode=quick ;;
        --dry-run) mode=dry ;;
        --out) out="$2"; shift ;;
        --only) only="$2"; shift ;;
        *) echo "unknown argument: $1 (use --quick, --dry-run, --out FILE, --only REGEX)" >&2; exit 2 ;;
    esac
    shift
done

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}

if ! "$PY" -c "import diffusers, peft, decord" 2>/dev/null; then
    wheels=${VIVID_WHEELS:-.whl}
    if [ -d "$wheels" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/vivid-site "$wheels"/*.whl
        export PYTHONPATH="/tmp/vivid-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        "$PY" -m pip install -q -e .
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$mode" = dry ]; then
    # the tiny model on the CPU, one step: every command line below runs, none of the figures mean anything
    size=(--size tiny --device cpu --frames 5 --height 32 --width 48)
    long=(--size tiny --device cpu --frames 17,25 --height 64 --width 96 --clip-frames 9)
    wan_shape=(--device cpu --frames 5 --height 32 --width 48)
    declare -A wan_size=([1.3b]=tiny [14b]=tiny)  # both Wan rows run the tiny Wan
    offload_device=cpu  # accelerate's hooks with the CPU as execution device (sequential: weights on meta)
    masks=(--model tiny --device cpu --frames 6)  # the tiny SAM 2 / SAM 3 of vivid.segmentation.tiny
    joint=(--device cpu --keyframes 6 --keyframe-group 4 --height 32 --width 48)
    declare -A joint_size=([cogvideox]=tiny [wan]=tiny)
    long_parallel=(--size tiny --device cpu --frames 17 --height 64 --width 96 --clip-frames 9)
    steps=1
    train_steps=1
else
    size=(--size 5b --frames 49 --height 480 --width 720)
    long=(--size 5b --frames 97,193 --height 480 --width 720)
    wan_shape=(--frames 81 --height 480 --width 832)
    declare -A wan_size=([1.3b]=1.3b [14b]=14b)
    offload_device=cuda
    masks=(--model full-random --frames 250 1000)  # SAM 2.1 hiera-large / SAM 3 architectures, random weights
    joint=(--keyframes 16 --keyframe-group 4 --height 480)
    declare -A joint_size=([cogvideox]=5b [wan]=1.3b)
    long_parallel=(--size 5b --frames 193 --height 480 --width 720)
    steps=4
    train_steps=2
    [ "$mode" = quick ] && steps=2 && long=(--size 5b --frames 97 --height 480 --width 720)
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: use --dry-run')"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
failed=0
run() {  # run NAME ARGS...: one benchmark's JSON into $tmp/NAME.json, its seconds into $tmp/NAME.seconds
    # a failing run is recorded (its last error line) and the suite goes on: one broken row loses no others
    local name=$1; shift
    if [ -n "$only" ] && ! [[ $name =~ $only ]]; then return 0; fi
    local t0=$SECONDS
    echo "== $name: $*" >&2
    if "$PY" "$@" --json > "$tmp/$name.out" 2> >(tee "$tmp/$name.err" >&2); then
        sed -n '/^{/,$p' "$tmp/$name.out" > "$tmp/$name.json"
    else
        failed=1
        "$PY" -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
            "$(grep -v '^\s*$' "$tmp/$name.err" | tail -n 1)" > "$tmp/$name.json"
    fi
    echo $((SECONDS - t0)) > "$tmp/$name.seconds"
}

infer=(benchmarks/bench_inference.py "${size[@]}" --steps "$steps" --no-isolate)
run inference_guidance "${infer[@]}" --guidance 6
run inference_no_guidance "${infer[@]}" --guidance 1
if [ "$mode" != quick ]; then
    fast=(--attention-backend auto --merge-lora --fuse-qkv)
    [ "$mode" = dry ] && fast=(--merge-lora --fuse-qkv)
    run inference_fast "${infer[@]}" --guidance 6 --no-stock --no-vivid-default "${fast[@]}"
    run inference_24gb "${infer[@]}" --guidance 6 --no-stock --no-vivid-default --memory group_offload --vae-tiling
    for cache in fbc pab fastercache taylorseer; do
        run "inference_cache_$cache" "${infer[@]}" --guidance 6 --no-stock --no-vivid-default --cache "$cache"
    done
fi
train_size=("${size[@]}")
run training benchmarks/bench_train.py "${train_size[@]}" --steps "$train_steps" --gradient-checkpointing \
    --no-isolate
run long_edit benchmarks/bench_long.py "${long[@]}" --steps "$steps" --guidance 6
# the joint keyframe pass of --long-mode parallel: one forward of K keyframes, full / AAS, one batch / groups
for family in cogvideox wan; do
    joint_width=(--width 720)
    [ "$family" = wan ] && joint_width=(--width 832)
    [ "$mode" = dry ] && joint_width=()
    run "joint_keyframes_${family}_${joint_size[$family]}" benchmarks/bench_joint_keyframes.py --family "$family" \
        --full-size "${joint_size[$family]}" "${joint[@]}" "${joint_width[@]}"
done
# --long-mode parallel in 2 processes (accelerate launch, one GPU each; a `skipped` line below 2 GPUs)
run long_edit_parallel_2_processes benchmarks/bench_long.py "${long_parallel[@]}" --steps "$steps" --guidance 6 \
    --long-mode parallel --processes 2
for wan in 1.3b 14b; do
    wan_args=(benchmarks/bench_wan_gpu.py --size "${wan_size[$wan]}" "${wan_shape[@]}")
    run "inference_wan2.1_${wan}_guidance" "${wan_args[@]}" --mode inference --steps "$steps" --guidance 5
    run "inference_wan2.1_${wan}_no_guidance" "${wan_args[@]}" --mode inference --steps "$steps" --guidance 1
    run "training_wan2.1_${wan}" "${wan_args[@]}" --mode training --train-steps "$train_steps" \
        --gradient-checkpointing
done
# Wan2.1-VACE-1.3B (random weights) edited through vivid beside the stock WanVACEPipeline, same process and weights:
# per-step time, peak memory and vivid's overhead ratio (benchmarks/bench_vace_gpu.py)
run "inference_vace_1.3b" benchmarks/bench_vace_gpu.py --size "${wan_size[1.3b]}" "${wan_shape[@]}" \
    --steps "$steps" --guidance 5
# a Wan edit (tiny Wan, loaded as `vivid edit` loads it) under model and sequential CPU offload, beside the plain one
for memory in model_offload sequential_offload; do
    run "wan_edit_$memory" benchmarks/bench_wan_offload.py --memory "$memory" --device "$offload_device" \
        --steps "$steps"
done

for segmenter in sam2 sam3; do  # `vivid mask`: masks per second and peak memory at two lengths
    run "masks_$segmenter" benchmarks/bench_masks.py speed --segmenter "$segmenter" "${masks[@]}"
done

# each speed and memory option of `vivid edit`, through its own loading code, on both tiny bases (the path, not
# the figure); the offloads move models between the CPU and a GPU, so the CPU dry run leaves them out
edit_options=("--memory group" "--vae-tiling" "--vae-slicing" "--attention-backend auto" "--fuse-lora"
              "--fuse-qkv-projections" "--compile-repeated-blocks" "--cache first_block_cache"
              "--cache pyramid_attention_broadcast" "--cache taylorseer_cache")
[ "$mode" != dry ] && edit_options+=("--memory model" "--memory sequential")
for family in cogvideox wan; do
    family_options=("${edit_options[@]}")
    [ "$family" = cogvideox ] && family_options+=("--cache faster_cache")  # it batches guidance: CogVideoX's way
    for flags in "${family_options[@]}"; do
        name="edit_${family}_$(echo "$flags" | tr -d '-' | tr ' ' '_')"
        device=()
        [ "$mode" = dry ] && device=(--device cpu)
        run "$name" benchmarks/bench_edit_options.py --family "$family" --flags="$flags" "${device[@]}"
    done
done

# training paths only a GPU takes: fp16 steps through a gradient overflow; embed-captions on the GPU, both bases
paths=(benchmarks/check_training_gpu_paths.py)
if [ "$mode" = dry ]; then paths_device=(--device cpu); fp16_steps=3; else paths_device=(--device cuda); fp16_steps=20; fi
run training_fp16_overflow "${paths[@]}" --check fp16-overflow --steps "$fp16_steps" "${paths_device[@]}"
for family in cogvideox wan; do
    run "embed_captions_$family" "${paths[@]}" --check embed-captions --family "$family" "${paths_device[@]}"
done

"$PY" benchmarks/gpu_suite_report.py "$tmp" --mode "$mode" --seconds $((SECONDS - start)) --out "$out"
exit $failed
