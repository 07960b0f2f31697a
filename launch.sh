#!/usr/bin/env bash
# Launch VIVID training with accelerate: detects the GPUs, picks the DeepSpeed config, passes multi-node args.
#
#   ./launch.sh --config configs/vivid-5b.yaml [--zero zero2|zero2_offload|zero3|zero3_offload]
#               [--gpus N | --cpu-processes N] [--num-machines N --machine-rank R --main-address HOST --main-port PORT]
#               [--resume latest|PATH | --overwrite] [--dry-run] [key=value ...]
#
# Without a GPU (or with configs/tiny.yaml) it runs one CPU process (configs/accelerate/cpu.yaml); --cpu-processes N
# runs N CPU processes under the --zero DeepSpeed config instead (DeepSpeed's CPU accelerator over gloo: tests, CI).
# key=value arguments are config overrides (optim.lr=1e-4 checkpoint.output_dir=runs/x).
# GPUs: --gpus N, else the devices in CUDA_VISIBLE_DEVICES (when set), else `nvidia-smi -L`.
# Paths (--config, --resume, the config's output_dir and manifests) are relative to the current directory:
# the training runs where launch.sh is called from, as `vivid train` would.
# A long edit on several GPUs (or machines sharing the work folder) is not launched by this script but by accelerate:
#   accelerate launch --multi_gpu --num_processes N -m vivid.cli edit ... --long-mode parallel [--work-dir DIR]
# (one GPU per process; several machines: --num_machines, --machine_rank, --main_process_ip as for training). Rank r
# edits clips r, r+N, ...; rank 0 edits the joint keyframes first and assembles the output; the output is that of one
# process, bit for bit. A run killed on any rank is resumed by the same command: only unfinished clips are redone.
set -euo pipefail
repo="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

config="" zero="zero2" gpus="" cpu_processes="" num_machines=1 machine_rank=0 main_address="" main_port=29500 resume="" overwrite=0 dry_run=0
overrides=()
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "launch.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) need "$@"; config="$2"; shift 2 ;;
    --zero) need "$@"; zero="$2"; shift 2 ;;
    --gpus) need "$@"; gpus="$2"; shift 2 ;;
    --cpu-processes) need "$@"; cpu_processes="$2"; shift 2 ;;
    --num-machines) need "$@"; num_machines="$2"; shift 2 ;;
    --machine-rank) need "$@"; machine_rank="$2"; shift 2 ;;
    --main-address) need "$@"; main_address="$2"; shift 2 ;;
    --main-port) need "$@"; main_port="$2"; shift 2 ;;
    --resume) need "$@"; resume="$2"; shift 2 ;;
    --overwrite) overwrite=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "launch.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
[[ -n "$config" ]] || { echo "launch.sh: --config is required" >&2; exit 2; }
[[ -f "$config" ]] || { echo "launch.sh: config $config not found (relative to $PWD)" >&2; exit 2; }
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
case "$zero" in zero2|zero2_offload|zero3|zero3_offload) ;; *) echo "launch.sh: --zero must be zero2, zero2_offload, zero3 or zero3_offload" >&2; exit 2 ;; esac
[[ "$num_machines" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --num-machines must be a positive integer" >&2; exit 2; }
[[ "$machine_rank" =~ ^[0-9]+$ && "$machine_rank" -lt "$num_machines" ]] ||
  { echo "launch.sh: --machine-rank must be in [0, $num_machines)" >&2; exit 2; }
if [[ "$num_machines" -gt 1 && -z "$main_address" ]]; then
  echo "launch.sh: --num-machines $num_machines needs --main-address (the rank-0 machine)" >&2; exit 2
fi

if [[ -n "$cpu_processes" ]]; then
  [[ "$cpu_processes" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --cpu-processes must be a positive integer" >&2; exit 2; }
  [[ -z "$gpus" ]] || { echo "launch.sh: give --gpus or --cpu-processes, not both" >&2; exit 2; }
  [[ "$num_machines" -eq 1 ]] || { echo "launch.sh: --cpu-processes runs on one machine" >&2; exit 2; }
fi

# Read (and validate) the config: the model, the precision and the accumulation/clipping DeepSpeed must be told about.
read -r pretrained precision accum clip < <(python - "$config" "${overrides[@]}" <<'PY'
import sys
from train.config import load_config
try:
    c = load_config(sys.argv[1], sys.argv[2:])
except (ValueError, FileNotFoundError) as err:
    sys.exit(f"launch.sh: bad config: {err}")
print(c.model.pretrained, c.mixed_precision, c.optim.gradient_accumulation_steps, c.optim.max_grad_norm)
PY
) || true
[[ -n "${pretrained:-}" ]] || exit 2

if [[ -z "$gpus" ]]; then
  gpus=0
  if command -v nvidia-smi >/dev/null 2>&1; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
  if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    # only the visible devices count: "" hides them all, "0,1" gives 2 (CUDA stops at the first invalid entry)
    visible=0
    IFS=',' read -r -a entries <<< "$CUDA_VISIBLE_DEVICES"
    for entry in "${entries[@]}"; do
      entry="${entry// /}"
      [[ -z "$entry" || "$entry" == -* ]] && break
      visible=$((visible + 1))
    done
    if (( visible < gpus )); then gpus=$visible; fi
  fi
fi
[[ "$gpus" =~ ^[0-9]+$ ]] || { echo "launch.sh: --gpus must be a number" >&2; exit 2; }

args=()
deepspeed_args=(--mixed_precision "$precision" --gradient_accumulation_steps "$accum" --gradient_clipping "$clip")
if [[ -n "$cpu_processes" ]]; then
  echo "launch.sh: $cpu_processes CPU process(es), DeepSpeed $zero on DeepSpeed's CPU accelerator (gloo)" >&2
  export DS_ACCELERATOR=cpu CUDA_VISIBLE_DEVICES=""
  args=(--config_file "$repo/configs/accelerate/$zero.yaml" --num_processes "$cpu_processes" --num_machines 1
        --machine_rank 0 --main_process_port "$main_port" "${deepspeed_args[@]}")
elif [[ "$gpus" -eq 0 || "$pretrained" == "tiny" ]]; then
  echo "launch.sh: one CPU process (gpus=$gpus, model=$pretrained)" >&2
  args=(--config_file "$repo/configs/accelerate/cpu.yaml" --num_processes 1)
else
  total=$((gpus * num_machines))
  echo "launch.sh: $gpus GPU(s) x $num_machines machine(s) = $total processes, DeepSpeed $zero" >&2
  args=(--config_file "$repo/configs/accelerate/$zero.yaml" --num_processes "$total" --num_machines "$num_machines"
        --machine_rank "$machine_rank" --main_process_port "$main_port" "${deepspeed_args[@]}")
  if [[ "$num_machines" -gt 1 ]]; then
    # accelerate would otherwise start DeepSpeed's pdsh launcher (ssh to every host from rank 0); "standard"
    # runs torchrun on each machine, which is how launch.sh is used: once per machine with its --machine-rank
    args+=(--main_process_ip "$main_address" --deepspeed_multinode_launcher standard)
  elif [[ -n "$main_address" ]]; then
    args+=(--main_process_ip "$main_address")
  fi
fi

cmd=(accelerate launch "${args[@]}" -m train --config "$config")
[[ -n "$resume" ]] && cmd+=(--resume "$resume")
[[ "$overwrite" -eq 1 ]] && cmd+=(--overwrite)
cmd+=("${overrides[@]}")
echo "+ ${cmd[*]}" >&2
[[ "$dry_run" -eq 1 ]] && exit 0
exec "${cmd[@]}"
