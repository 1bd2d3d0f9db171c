#!/usr/bin/env bash
# Build both images the way `make image` and `make sif` do (ptblm.container.build_image and
# build_sif), then check them:
#   Docker:    the entrypoint is ptblm; the .def's %test (import, one-batch GRU forward on the CPU)
#              passes in the Docker image too; no data or results inside; CUDA with --gpus.
#   Apptainer: a .sif from the daemon and one from a `docker save` tar (each build runs %test);
#              the runscript; the job command line of container_shell_prefix (same-path binds,
#              $SLURM_TMPDIR, --env, the scontrol stand-in that records requeues); CUDA with --nv.
# GPU checks run only where nvidia-smi works. Needs a Docker engine and Apptainer: without them it
# exits 2 saying which is missing (tests/test_container.py skips for the same reason).
# Usage: docker/verify-images.sh   (PYTHON=.venv/bin/python, VERIFY_DIR=build/verify-images)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${VERIFY_DIR:-build/verify-images}
TAG=ptblm:latest  # ptblm.container.IMAGE_TAG, the tag docker/ptblm.def bootstraps from

missing=()
docker info > /dev/null 2>&1 || missing+=("a Docker engine (docker info failed)")
command -v apptainer > /dev/null || missing+=("apptainer (not on PATH)")
if (( ${#missing[@]} )); then
    joined=$(printf '%s and ' "${missing[@]}")
    echo "verify-images: needs ${joined% and }" >&2
    exit 2
fi

step() { echo "== $*"; }
container() { PYTHONPATH=src "$PYTHON" -c "from ptblm.container import *; $1"; }
has_gpu() { command -v nvidia-smi > /dev/null && nvidia-smi > /dev/null 2>&1; }
cuda_check='import torch; assert torch.cuda.is_available(), "no CUDA"; print("CUDA:", torch.cuda.get_device_name(0))'
mkdir -p "$OUT"

step "docker build ($TAG)"
container "build_image('$TAG', 'docker/Dockerfile', '.')"

step "docker: the entrypoint is ptblm"
docker run --rm "$TAG" --help | grep -q "usage: ptblm"

step "docker: the %test section of docker/ptblm.def"
awk '/^%test/ {on = 1; next} /^%/ {on = 0} on' docker/ptblm.def |
    docker run --rm -i --entrypoint /bin/sh "$TAG" -s

step "docker: no data or results in the image"
docker run --rm --entrypoint /bin/sh "$TAG" -c \
    'found=$(find / -xdev \( -name "ptb.*.txt" -o -name best.pt -o -name last.pt -o -name curves.json \) -print); [ -z "$found" ] || { echo "$found"; exit 1; }'

if has_gpu; then
    step "docker: CUDA"
    docker run --rm --gpus all --entrypoint python "$TAG" -c "$cuda_check"
fi

step "apptainer: .sif from the Docker daemon (the build runs %test)"
container "build_sif('$OUT/ptblm.sif', '$TAG', 'docker/ptblm.def')"

step "apptainer: .sif from a docker save tar (the build runs %test)"
docker save "$TAG" -o "$OUT/ptblm.tar"
container "build_sif('$OUT/from-tar.sif', '$OUT/ptblm.tar', 'docker/ptblm.def')"
rm -f "$OUT/ptblm.tar"
apptainer test "$OUT/from-tar.sif"

step "apptainer: the runscript"
apptainer run "$OUT/ptblm.sif" --help | grep -q "usage: ptblm"

step "apptainer: the job command line (binds, \$SLURM_TMPDIR, --env, requeue forwarding)"
bound="$OUT/bound" && rm -rf "$bound" && mkdir -p "$bound/tmpdir"
prefix=$(container "print(container_shell_prefix(ContainerSpec(image='$OUT/ptblm.sif', nv=False,
    binds=job_binds('.', '$bound', '$bound'), env=requeue_env('$bound'))))")
(
    export SLURM_JOB_ID=777 SLURM_TMPDIR="$PWD/$bound/tmpdir"
    eval "$prefix sh -c 'touch \"\$SLURM_TMPDIR/seen\" && scontrol requeue 777_1'"
)
test -f "$bound/tmpdir/seen"
test "$(cat "$bound/requeue.777")" = 777_1

if has_gpu; then
    step "apptainer: CUDA with --nv"
    apptainer exec --nv "$OUT/ptblm.sif" python -c "$cuda_check"
fi

echo "verify-images: both images built and passed"
