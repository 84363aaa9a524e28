#!/bin/bash
# The GPU checks of issue 22 (speed) and issue 18 (DMC-100k cost), as one command for a lent GPU
# machine that has PyTorch but nothing else of ours and no network. Two steps:
#
#   bash benchmarks/gpu_checks.sh --prepare    # here, with network: wheels into .whl/, EGL into .gl/
#   bash benchmarks/gpu_checks.sh              # there (carry .whl .gl third_party/kaixhin); $OUT set
#
# --prepare downloads mujoco and our other dependencies as CPython 3.12 wheels, and dm_control
# with its locomotion assets and the dog's meshes left out (56 → 4 MB: the suite's six tasks need
# neither, and a device call carries 64 MiB at most). Everything it writes is git-ignored.
# The checks (about 9 minutes on an H200; session 28's results in BENCHMARKS.md): the four tests
# that need CUDA, the whole world-model update eager, as one CUDA graph (planet train's
# --optim.cuda-graph path) and under torch.compile (bench_update_graph.py), the train step and
# planned action beside Kaixhin/PlaNet (bench_vs_kaixhin.py), and what a DMC-100k run of the cpu
# preset costs on the GPU, eager and with the update graph (a 60-update probe of walker-walk
# each, whose last line projects it).
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  set -e
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  grep -qx "/.gl/" .git/info/exclude || echo "/.gl/" >> .git/info/exclude
  mkdir -p .whl .gl /tmp/amd64/partial
  platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64"
  platforms="$platforms --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  for pin in mujoco dm-env dm-tree glfw PyOpenGL tyro docstring_parser typeguard dm_control; do
    version=$(grep -i -m1 "^${pin}==" constraints.txt | cut -d= -f3)
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp $platforms -d .whl "$pin==$version"
  done
  tmp=$(mktemp -d); (cd "$tmp" && unzip -q "$OLDPWD"/.whl/dm_control-*.whl)
  rm -rf "$tmp"/dm_control/{locomotion,blender,suite/dog_assets,mujoco/testing,suite/all_domains.png}
  tar czf .whl/dm_control-stripped.tgz -C "$tmp" . && rm -rf "$tmp" .whl/dm_control-*.whl
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq && (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 \
    libopengl0 libgl1 libglx0 libgles2)
  du -sh .whl .gl
  exit 0
fi
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
left() { echo $((${BUDGET:-555} - $(el))); }
OUT=${OUT:-runs/gpu_checks}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
f=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f $f ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$f
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || echo "pip install failed"
tar xzf .whl/dm_control-stripped.tgz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD/src MUJOCO_GL=egl
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== [$(el) s] the tests that skip without CUDA (by name: test_cli first would eat the time)"
timeout 120 python3 -m pytest -q -p no:cacheprovider -rA \
  tests/test_checkpoint.py::test_rng_streams_resume_from_a_checkpoint_mapped_onto_the_gpu \
  tests/test_models.py::test_plain_modules_move_to_cuda_and_compute_the_same \
  tests/test_planning.py::test_cuda_graph_plans_one_launch_per_decision_with_fresh_noise_and_current_belief \
  tests/test_update_graph.py::test_cuda_graph_update_replays_the_eager_update \
  2>&1 | tail -8
echo "== [$(el) s] whole update: eager, one CUDA graph, torch.compile (paper size)"
timeout 260 python3 benchmarks/bench_update_graph.py --device cuda \
  --variants eager graph compile --child-limit-s 170 > "$OUT/update_graph.json"
echo "== [$(el) s] beside Kaixhin/PlaNet"
timeout 150 python3 benchmarks/bench_vs_kaixhin.py --device cuda --warmup 5 --repeats 20 \
  --impls ours_nograph ours ours_bf16 kaixhin > "$OUT/vs_kaixhin.json"
for graph in no-cuda-graph cuda-graph; do
  L=$(left)
  [ "$L" -lt 40 ] && break
  echo "== [$(el) s] DMC-100k cost probe on the GPU: walker-walk, --optim.$graph"
  timeout $((L < 90 ? L : 90)) python3 -c \
    'import sys; from planet_torch.cli import main; sys.argv[0] = "planet"; main()' \
    train --preset cpu --task walker-walk --device cuda --run-dir /tmp/probe-$graph \
    --optim.$graph --schedule.total-updates 60 --schedule.test-every-updates 1000 \
    --schedule.final-eval-episodes 0 > /tmp/probe-$graph.log 2>&1
  grep -i "without a CUDA graph" /tmp/probe-$graph.log  # a capture that failed says so
  grep -v "^\s*$" /tmp/probe-$graph.log | tail -9
done
L=$(left)
if [ "$L" -gt 90 ]; then
  echo "== [$(el) s] torch.compile, mode reduce-overhead ($L s left)"
  timeout "$L" python3 benchmarks/bench_update_graph.py --device cuda \
    --variants eager compile_ro --child-limit-s $((L - 45)) > "$OUT/update_compile_ro.json"
fi
echo "== [$(el) s] done"
