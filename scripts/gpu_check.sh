#!/usr/bin/env bash
# Issue 3's GPU row, prepared for a session lent a GPU machine (the `device` tool; README "On a GPU").
# That machine has torch, transformers, accelerate, tokenizers, safetensors, pytest and hypothesis but
# no network and no papermill, so nothing is installed: the repo runs from PYTHONPATH.
#
#   scripts/gpu_check.sh tests       the Verifier's tests, its GPU-only one included, and the model's (7 s on CPU)
#   scripts/gpu_check.sh bench       make bench's throughput ratios on the gpu profile (sampling its data: ~35 s)
#   scripts/gpu_check.sh experiment  train + evaluate the gpu profile's standard models -> gpu.json (the long one)
#   scripts/gpu_check.sh sweeps      the same plus by_n_operations, data_efficiency and ablations (21 more
#                                    full-size models: hours, not for a 15-minute device session)
#   scripts/gpu_check.sh rl          the LM policy's SFT and its 12 RL runs (params/gpu.yaml, section rl) -> rl-gpu.json
#
# Results go to $OUT (the device tool's folder that comes back) or build/gpu. Trained models are
# cached under build/cache, which stays on a warm machine: an experiment cut off by a call's time
# limit resumes from its last finished model when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONHASHSEED=0 HF_HUB_OFFLINE=1
export PRM_COURSE_CACHE=${PRM_COURSE_CACHE:-$PWD/build/cache}
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
    "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'
profile=${PROFILE:-gpu}  # PROFILE=cpu tries the script itself on a machine without a GPU
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(tests bench experiment)
for stage in "${stages[@]}"; do
  case "$stage" in
    # test_training is left out: train() moves to the GPU by itself there, and its exact-repeat
    # tests hold on CPU only (bf16 kernels need not repeat bit for bit); bench and experiment train.
    tests) python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_verification.py \
             tests/test_model.py 2>&1 | tee "$out/pytest-$profile.log" ;;
    bench) python3 benchmarks/throughput.py --profile "$profile" | tee "$out/bench-$profile.json" ;;
    experiment|sweeps)
                python3 -m prm_core.experiments --profile "$profile" --out "$out/$profile.json" \
                  $([ "$stage" = experiment ] && echo --no-sweeps) \
                  > "$out/$stage-$profile.log" 2>&1 || { tail -n 40 "$out/$stage-$profile.log"; exit 1; }
                python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps(
                  {k: d[k] for k in ("device", "step_auroc", "first_error_f1", "throughput", "training")}, indent=1))' \
                  "$out/$profile.json" ;;
    rl) python3 -m prm_core.policy_runs --profile "$profile" --out "$out/rl-$profile.json" \
          > "$out/rl-$profile.log" 2>&1 || { tail -n 40 "$out/rl-$profile.log"; exit 1; }
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps({"policy": d["policy"],
          "end": {r: [s["curve"][-1] for s in d[r].values()] for r in d if isinstance(d[r], dict) and "0" in d[r]}},
          indent=1))' "$out/rl-$profile.json" ;;
    *) echo "unknown stage $stage: use tests, bench, experiment, sweeps or rl" >&2; exit 2 ;;
  esac
done
