#!/usr/bin/env bash
# The package installs alone: builds the wheel, installs it into a fresh virtual environment
# (no -e, no requirements.txt), classifies an example clip with the embedded default model that
# the wheel carries, then installs each extra and imports what it is for. Fails loudly.
#
#   bash .ci/wheel_check.sh            # from `make wheel-check` / `make test`
#
# torch is installed first, as a user picks their build (CPU / CUDA) before gia-mic: here the
# 2.13.0 CPU build that lies on this machine's disk; gia-mic's torch>=2.4 then installs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HF_HUB_OFFLINE=1 GIA_MIC_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON=${PYTHON:-python3}
TORCH=${WHEEL_CHECK_TORCH:-torch==2.13.0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT  # (deleting the venv's ~40,000 files can take a while on a busy disk)
start=$(date +%s)
step() { echo "wheel-check [$(( $(date +%s) - start )) s] $*"; }
fail() { echo "wheel-check: FAILED: $*" >&2; exit 1; }
pipq() {  # runs pip; its output without this machine's "Location ... is ignored" noise
  local log status=0
  log=$(mktemp)
  "$@" > "$log" 2>&1 || status=$?
  grep -v "^WARNING: Location" "$log" || true
  rm -f "$log"
  return "$status"
}

step "building the wheel (from a copy of the files git tracks or would track: no stale build/ folder)"
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$WORK/src"
pipq "$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" || fail "the wheel did not build"
WHEEL=$(ls "$WORK"/dist/gia_mic-*.whl)

step "fresh venv: $TORCH, then $(basename "$WHEEL") (core dependencies only)"
"$PYTHON" -m venv "$WORK/venv"
V="$WORK/venv/bin"
pipq "$V/pip" install -q "$TORCH" || fail "could not install $TORCH"
pipq "$V/pip" install -q "$WHEEL" || fail "the wheel's core dependencies did not install"
pipq "$V/pip" check || fail "pip check"

cd "$WORK"  # nothing of the checkout on sys.path from here on
MODEL=$("$V/python" -c "import gia_mic, pathlib; print(pathlib.Path(gia_mic.__file__).parent / 'embedded' / 'gia-mic-lite')")
case "$MODEL" in "$WORK"/venv/*) ;; *) fail "gia_mic imported from $MODEL, not from the fresh venv" ;; esac
diff -r "$ROOT/checkpoints/gia-mic-lite" "$MODEL" > /dev/null || fail "the wheel's embedded model differs from checkpoints/gia-mic-lite"

step "gia-mic predict with the embedded model (found by default_model, no --model)"
"$V/gia-mic" predict "$ROOT/examples/1001_DFA_ANG_XX.mp4" --text "Don't forget a jacket." --json \
    > "$WORK/predict.json" || fail "gia-mic predict"
"$V/python" - "$WORK/predict.json" <<'EOF' || fail "gia-mic predict printed an unexpected result"
import json, sys
result = json.load(open(sys.argv[1]))
assert result["modalities_used"] == ["audio", "text"], result
assert abs(sum(s["score"] for s in result["scores"]) - 1) < 1e-4, result
print("  ->", result["label"], {s["label"]: round(s["score"], 3) for s in result["scores"]})
EOF
"$V/gia-mic" predict "$ROOT/examples/1001_DFA_ANG_XX.mp4" --json > "$WORK/no_asr.json" \
    || fail "gia-mic predict without a transcript (no ASR installed: text must be marked missing)"
grep -q '"transcript_source": "missing"' "$WORK/no_asr.json" || fail "without [asr], text should be missing"

# Each extra: install it, then import what it is for. train/, hub_card/, app.py and gia_app/ are not in the
# wheel; they run from a checkout, so a copy of them (without gia_mic/) is imported against the venv.
cp -r "$ROOT/train" "$ROOT/hub_card" "$ROOT/app.py" "$ROOT/gia_app" "$ROOT/spaces_config.yaml" "$WORK/"
declare -A IMPORTS=(
  [app]="import gia_mic.plots, gradio, mcp, app, gia_app.ui"
  [train]="import gia_mic.plots, accelerate, hub_card.render, train.loop, train.run, train.publish, train.lite, train.prepare"
  [asr]="import whisper, gia_mic.asr as a; t = a.WhisperTranscriber(); ok, why = t.available(); assert ok, why"
  [onnx]="import onnx, onnxscript, onnxruntime, gia_mic.onnx_export, gia_mic.onnx_runtime"
  [dev]="import pytest, ruff, psutil, playwright, soundfile"
)
for extra in app train asr onnx dev; do
  step "[$extra]"
  pipq "$V/pip" install -q "$WHEEL[$extra]" || fail "pip install gia-mic[$extra]"
  if [ "$extra" = asr ]; then
    pipq "$V/pip" install -q --no-deps openai-whisper==20250625 || fail "openai-whisper --no-deps"
  fi
  "$V/python" -c "import gia_mic; ${IMPORTS[$extra]}" || fail "imports of [$extra]"
done
step "passed"
