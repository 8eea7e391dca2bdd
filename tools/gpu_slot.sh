#!/usr/bin/env bash
# Train GroundedWorld-S and its text-only baseline on a lent GPU inside one time-limited command, then score both.
#
#   bash tools/gpu_wheels.sh                       # here, once: the wheels that machine lacks, into .whl/
#   device run, carry [".whl"]: TRAIN_S=330 N=256 bash tools/gpu_slot.sh    # results under $OUT
#
# 1. builds the training and evaluation worlds (MODEL_CARD.md "Data"), the two chains side by side;
# 2. trains configs/groundedworld-s-gpu-instruct.yaml from INIT (default: the shipped checkpoint) for the model
#    and, beside it on the same GPU, the same recipe with train.text_only=true; both stop with a checkpoint after
#    TRAIN_S seconds (train.max_time_s). FACTOR=2 first grows INIT twice as wide (tools/grow_checkpoint.py: the
#    same outputs, hidden and heads doubled) and trains that; RESUME=1 goes on from runs already in RUNS instead
#    (with the same FACTOR);
#    to cool them down before they are scored (as the shipped model was), a last slot with RESUME=1 and
#    EXTRA="--set train.schedule=wsd --set train.steps=S --set train.decay_steps=D", S = their step now + D;
# 3. scores both at the newest step both hold with `vimi eval grounding` on N held-out prompts per task, and
#    ships the model's checkpoint of that step in fp16 to $OUT/groundedworld-s.
# $OUT gets five files (the device tool brings back at most 8): slot.log (with a failed step's log tail),
# metrics.json and the shipped folder; the runs, their logs and the report stay in RUNS.
# The script's own settings are environment variables; anything else is `--set` in EXTRA (both runs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu-slot}
TRAIN_S=${TRAIN_S:-330}
N=${N:-256}
INIT=${INIT:-checkpoints/groundedworld-s}
RUNS=${RUNS:-runs/gpu-slot}
RESUME=${RESUME:-0}
FACTOR=${FACTOR:-1}
EXTRA=${EXTRA:-}
if [ -x .venv/bin/vimi ]; then
  VIMI=.venv/bin/vimi PY=.venv/bin/python
else  # a lent GPU machine: its python3 holds a CUDA torch; the rest comes as wheels (tools/gpu_wheels.sh)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD/src:/tmp/site
  VIMI="python3 -m vimi.cli" PY=python3
fi
LOGS=$RUNS/logs
mkdir -p "$OUT" "$LOGS"
log() { echo "[gpu_slot $(date +%T)] $*" | tee -a "$OUT/slot.log"; }
fail() { log "$1 failed:"; tail -n 30 "$2" | tee -a "$OUT/slot.log"; exit 1; }

log "data"
if [ ! -f outputs/prompts-train/manifest.json ]; then
  ( $VIMI world --out outputs/world-train --preset small --seed 1 --set world.num_train_subjects=512 \
      --set world.num_train_videos=6000 --set world.num_heldout_videos=64 \
    && $VIMI index --corpus outputs/world-train/memory --out outputs/index-train \
    && $VIMI build-prompts --videos outputs/world-train/videos/train --index outputs/index-train \
      --out outputs/prompts-train ) > "$LOGS/data-train.log" 2>&1 &
fi
if [ ! -f outputs/index-eval/index.json ]; then
  ( $VIMI world --out outputs/world-eval --preset small --seed 0 --set world.num_heldout_videos=1024 \
      --set world.num_train_videos=64 \
    && $VIMI index --corpus outputs/world-eval/memory --out outputs/index-eval ) > "$LOGS/data-eval.log" 2>&1 &
fi
wait  # `wait` returns the last job's status only, so check what each chain wrote
[ -f outputs/prompts-train/manifest.json ] && [ -f outputs/index-eval/index.json ] \
  || fail "data build" <(tail -n 15 "$LOGS"/data-*.log)

model_sets=()
if [ "$FACTOR" != 1 ]; then  # both runs start from the grown model: the baseline's compute stays the same
  grown=$RUNS/init-x$FACTOR
  if [ ! -f "$grown/COMPLETE" ]; then
    $PY tools/grow_checkpoint.py "$INIT" "$grown" --factor "$FACTOR" > "$LOGS/grow.log" 2>&1 \
      || fail "growing $INIT" "$LOGS/grow.log"
  fi
  INIT=$grown
  read -r hidden heads < <($PY -c "import json, sys; b = json.load(open(sys.argv[1]))['model']['backbone']
print(b['hidden'], b['heads'])" "$grown/config.json")
  model_sets=(--set model.backbone.hidden="$hidden" --set model.backbone.heads="$heads")
fi
log "train ${TRAIN_S}s from $INIT (resume=$RESUME)"
resume_flag=""
[ "$RESUME" = 1 ] && resume_flag="--resume"
train() {  # train NAME EXTRA_SETS...
  local name=$1; shift
  # shellcheck disable=SC2086  # EXTRA holds several --set words
  $VIMI train --config configs/groundedworld-s-gpu-instruct.yaml --set train.init_from="$INIT" \
    --set train.out_dir="$RUNS/$name" --set train.max_time_s="$TRAIN_S" "${model_sets[@]}" $resume_flag "$@" $EXTRA \
    > "$LOGS/train-$name.log" 2>&1
}
train model & model_pid=$!
train text --set train.text_only=true & text_pid=$!
wait $model_pid || fail "training the model" "$LOGS/train-model.log"
wait $text_pid || fail "training the baseline" "$LOGS/train-text.log"

# Score both at the same step: the newest checkpoint step that both runs hold.
steps() { ls "$RUNS/$1/checkpoints" | grep -E '^step-[0-9]+$' | sort; }
step=$(comm -12 <(steps model) <(steps text) | tail -n 1)
[ -n "$step" ] || { log "the two runs hold no checkpoint of the same step"; exit 1; }
for name in model text; do
  log "$name: $(tail -n 1 "$RUNS/$name/metrics.jsonl")"
done
log "evaluate $step, N=$N"
$VIMI eval grounding --checkpoint "$RUNS/model/checkpoints/$step" --baseline "$RUNS/text/checkpoints/$step" \
  --world outputs/world-eval --n "$N" --task all --index outputs/index-eval --out "$RUNS/eval" \
  > "$LOGS/eval.log" 2>&1 || fail "evaluation" "$LOGS/eval.log"
cp "$RUNS/eval/metrics.json" "$OUT/metrics.json"
$PY tools/ship_checkpoint.py "$RUNS/model/checkpoints/$step" "$OUT/groundedworld-s" 2>&1 | tee -a "$OUT/slot.log"
log "done: $OUT (metrics.json, groundedworld-s/; the runs and the report in $RUNS)"
