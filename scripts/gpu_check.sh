#!/usr/bin/env bash
# The GPU slice (issue 22 item 4): check the CUDA path end to end and run a paper-scale slice of a
# few claims; the claims reports then quote it with the device named (results/gpu/gpu_check.json).
#
#   bash scripts/gpu_check.sh          on a machine with CUDA (torch with CUDA in .venv, or PY=...)
#   bash scripts/gpu_check.sh --dry    anywhere: the placement check on the CPU and both DAGs built
#                                      (snakemake -n); writes nothing under results/gpu
#
# Steps (each bounded by GPU_CHECK_TIMEOUT seconds, default 1500; a step that fails or times out
# is recorded as such, the next steps still run):
#   1. placement: a LeNet, its client gradient and 20 IG iterations on cuda (python -m gibench.gpu_slice)
#   2. one attack per family through the pipeline on cuda: config/gpu_check.yaml in results/gpu/check
#      (IG, DLG, LAMP, DAGER; CDIA against stochastic defenses; GS against DCS²); every job log must
#      say device cuda
#   3. the benchmarks' GPU figures: benchmarks/run.py --device cuda --out results/gpu/benchmarks
#   4. the paper-scale slice: config/gpu_slice.yaml in results/gpu/slice (its claims reports in
#      results/gpu/slice/results/claims)
#   5. results/gpu/gpu_check.json (device: torch.cuda.get_device_name), read by the claims reports
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
if [ -x "$REPO/.venv/bin/python" ]; then VENV_BIN=$REPO/.venv/bin/; else VENV_BIN=; fi   # else: from PATH
PY=${PY:-${VENV_BIN}python}
SMK=${SMK:-${VENV_BIN}snakemake}
CORES=${CORES:-4}
TIMEOUT=${GPU_CHECK_TIMEOUT:-1500}
BENCHES=${GPU_CHECK_BENCHES:-"ig significance"}
OUT=results/gpu
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"

DRY=0
case "${1:-}" in
  --dry) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry]" >&2; exit 2 ;;
esac

smk_cmd() {   # smk_cmd <config> <workdir>: the pipeline command in its own working directory (printed, one word a line)
  printf '%s\n' "$SMK" -s "$REPO/Snakefile" -d "$2" --configfile "$REPO/$1" \
    --config "resources_dir=$REPO/resources" "hub_dir=$REPO/resources/hub"
}
smk() {   # smk <config> <workdir> [snakemake args...]
  local cmd
  mapfile -t cmd < <(smk_cmd "$1" "$2")
  mkdir -p "$2"
  shift 2
  "${cmd[@]}" "$@"
}

if [ "$DRY" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "gpu_check --dry: placement on the CPU"
  "$PY" -m gibench.gpu_slice preflight --dry || exit 1
  for c in gpu_check gpu_slice; do
    echo "gpu_check --dry: config/$c.yaml (snakemake -n)"
    smk "config/$c.yaml" "$tmp/$c" -n --quiet rules || exit 1
  done
  echo "gpu_check --dry: ok (nothing written under $OUT)"
  exit 0
fi

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
  echo "gpu_check: torch.cuda.is_available() is False here; nothing run (--dry checks the script on a CPU)" >&2
  exit 1
}
mkdir -p "$OUT"
rm -f "$OUT/gpu_check.json"     # a summary only ever describes the run that wrote it
step() {  # step <name> <command...>: run bounded, record the exit status
  local name=$1
  shift
  echo "== gpu_check: $name" >&2
  timeout "$TIMEOUT" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name=$rc" >> "$OUT/steps.txt"
  echo "   exit status $rc (log: $OUT/$name.log)" >&2
}
: > "$OUT/steps.txt"
step placement "$PY" -m gibench.gpu_slice preflight --out "$OUT/preflight.json"
mapfile -t CHECK < <(smk_cmd config/gpu_check.yaml "$OUT/check"); mkdir -p "$OUT/check"
mapfile -t SLICE < <(smk_cmd config/gpu_slice.yaml "$OUT/slice"); mkdir -p "$OUT/slice"
step families "${CHECK[@]}" --cores "$CORES"
# shellcheck disable=SC2086
step benchmarks "$PY" benchmarks/run.py --device cuda --out "$OUT/benchmarks" $BENCHES
step slice "${SLICE[@]}" --cores "$CORES"
args=()
while read -r s; do args+=(--step "$s"); done < "$OUT/steps.txt"
"$PY" -m gibench.gpu_slice collect --gpu-dir "$OUT" --preflight "$OUT/preflight.json" \
  --bench-dir "$OUT/benchmarks" "${args[@]}"
