#!/usr/bin/env bash
# The demo-256 lineage, end to end: data, autoencoder, teacher, distillation, decoders,
# export, evaluation. Run from the repository root with the project installed:
#
#     bash models/weights/demo-256/retrain.sh            # the shipped recipe (hours on 2 CPU cores)
#     SMOKE=1 OUT=runs/smoke bash models/weights/demo-256/retrain.sh   # every stage, tiny budgets (minutes)
#
# Every command is resumable: rerun the script after an interruption and each stage
# continues from its last checkpoint (a finished training stage only reloads its data;
# the exports and the evaluation run again). Settings by
# environment: THREADS (torch threads, default 1: fastest on a shared CPU), OUT (run folder,
# default runs/demo-256), MODEL (exported folder, default models/weights/demo-256; a smoke
# run writes into $OUT/model instead), AE_KIND (autoencoder architecture, default tiny16),
# LATENT_CHANNELS (default 32), GAN_WEIGHT (default 0).
set -euo pipefail

SMOKE=${SMOKE:-0}
THREADS=${THREADS:-1}
OUT=${OUT:-runs/demo-256}
AE_KIND=${AE_KIND:-tiny16}
C=${LATENT_CHANNELS:-32}
GAN=${GAN_WEIGHT:-0}
if [ "$SMOKE" = 1 ]; then
    MODEL=${MODEL:-$OUT/model}
    DATA=$OUT/data
    SCENES=2 HELD=1 VIEWS=8
    AE_STEPS=4 TEACHER_STEPS=4 DISTILL_STEPS=2 DEC_STEPS=4 ADEC_STEPS=4 POOL=4 EVAL_STRIDE=4
else
    MODEL=${MODEL:-models/weights/demo-256}
    DATA=data
    SCENES=48 HELD=8 VIEWS=24
    AE_STEPS=1200 TEACHER_STEPS=1400 DISTILL_STEPS=600 DEC_STEPS=4000 ADEC_STEPS=2500 POOL=256 EVAL_STRIDE=2
fi
TRAIN=$DATA/train-varied TEST=$DATA/test-varied OOD=$DATA/ood
TEST_AA=$DATA/test-varied-aa OOD_AA=$DATA/ood-aa  # the same held-out scenes, anti-aliased: what the evaluation scores
DIT="{\"hidden_size\": 192, \"num_heads\": 3, \"depth\": 6, \"latent_channels\": $C, \"anchor_filled\": true}"
COMMON=(--data "$TRAIN" --val-data "$TEST" --autoencoder "$OUT/ae/autoencoder" --cache "$OUT/latent_cache"
        --threads "$THREADS" --seed 0)

# The same CPU kernels on every x86-64 machine with AVX2 (2013 on): torch's libraries choose
# their kernels by the CPU, and kernels of different vector widths or branches round differently,
# which a 2-hour training amplifies into models 0.4-0.5 dB apart (MODEL_CARD.md, "Reproduced from
# a fresh clone"). kernel_pins.env says which and why; export other values first to override
# (e.g. MKL_CBWR=AVX2: the DiT stages train ~2x faster, in bits that depend on the machine).
PINS=""
if [ "$(uname -m)" = x86_64 ]; then
    while IFS='=' read -r key value; do
        case "$key" in ''|'#'*) continue ;; esac
        export "$key=${!key:-$value}"
        PINS="$PINS $key=${!key}"
    done < "$(dirname "$0")/kernel_pins.env"
fi

# What ran this: a retrained model can differ from the shipped one between machines or library
# builds, though one machine repeats its own runs (MODEL_CARD.md, "Reproduced from a fresh clone").
mkdir -p "$OUT"
{
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "kernel pins:${PINS:- none (not x86-64)}"
    python -c "import platform, torch; print(platform.processor() or platform.machine(), 'torch', torch.__version__, \
torch.backends.cpu.get_cpu_capability())" || true
    grep -m1 "model name" /proc/cpuinfo 2>/dev/null || true
    python -m pip freeze 2>/dev/null || true
} >> "$OUT/environment.txt"

# Data: training families (room, courtyard, indoor, outdoor), their held-out scenes, and the
# held-out families (hall, street) no stage below ever reads but the evaluation; one ray per
# pixel. The held-out scenes again with 3 x 3 rays per pixel, box-averaged (docs/datagen.md), as
# a camera integrates over the pixel: one ray aliases fine textures, which the evaluation would
# count as every method's error. (Training on anti-aliased data too was tried and gave nothing:
# MODEL_CARD.md, "Trained on anti-aliased data".)
worldfm datagen procedural --kind varied --scenes "$SCENES" --views "$VIEWS" --out "$TRAIN" --seed 0
worldfm datagen procedural --kind varied --scenes "$HELD" --views "$VIEWS" --out "$TEST" --seed 100000
worldfm datagen procedural --kind held-out --scenes "$HELD" --views "$VIEWS" --out "$OOD" --seed 200000
worldfm datagen procedural --kind varied --scenes "$HELD" --views "$VIEWS" --out "$TEST_AA" --seed 100000 --supersample 3
worldfm datagen procedural --kind held-out --scenes "$HELD" --views "$VIEWS" --out "$OOD_AA" --seed 200000 --supersample 3

worldfm train-autoencoder --data "$TRAIN" --val-data "$TEST" --out "$OUT/ae" --kind "$AE_KIND" --latent-channels "$C" \
    --steps "$AE_STEPS" --batch-size 16 --crop 64 --lr 2e-3 --save-every 50 --seed 0 --threads "$THREADS"
worldfm train "${COMMON[@]}" --out "$OUT/teacher" --model demo --model-overrides "$DIT" \
    --steps "$TEACHER_STEPS" --batch-size 8 --lr 5e-4 --ema-decay 0.99 --save-every 50 --val-every 200
worldfm distill "${COMMON[@]}" --teacher "$OUT/teacher/teacher.safetensors" --out "$OUT/distill" \
    --steps "$DISTILL_STEPS" --batch-size 8 --generator-lr 1e-4 --critic-lr 2e-4 --critic-updates 2 \
    --regression-weight 0 --data-regression-weight 2.0 --hole-weight 4 --gan-weight "$GAN" --pool-size "$POOL" \
    --save-every 20
worldfm export --generator "$OUT/distill" --autoencoder "$OUT/ae/autoencoder" --out "$OUT/gen" --name demo-256
worldfm train-decoder --data "$TRAIN" --val-data "$TEST" --autoencoder "$OUT/ae/autoencoder" --out "$OUT/fastdec" \
    --steps "$DEC_STEPS" --batch-size 16 --crop 128 --lr 2e-3 --save-every 100 --seed 0 --threads "$THREADS"
worldfm train-anchor-decoder --model "$OUT/gen" --fast-decoder "$OUT/fastdec/fast_decoder" \
    --autoencoder "$OUT/ae/autoencoder" --data "$TRAIN" --val-data "$TEST" --out "$OUT/anchordec" \
    --steps "$ADEC_STEPS" --batch-size 8 --crop 128 --lr 1e-3 --save-every 100 --seed 0 --threads "$THREADS" \
    --learn-covered
worldfm export --generator "$OUT/distill" --autoencoder "$OUT/ae/autoencoder" \
    --fast-decoder "$OUT/anchordec/anchor_decoder" --out "$MODEL" --name demo-256 --fp16 1
worldfm eval --model "$MODEL" --data "$TEST_AA" --out-of-family "$OOD_AA" \
    --teacher "$OUT/teacher/teacher.safetensors" --teacher-steps 10 --stride "$EVAL_STRIDE" --threads "$THREADS" \
    --out "$OUT/eval"
