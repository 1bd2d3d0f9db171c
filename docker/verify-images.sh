#!/usr/bin/env bash
# Build the images the way `make image` and `make sif` do (ptblm.images.build_image and build_sif),
# then check them:
#   Docker or podman: the entrypoint is ptblm; the .def's %test (import, one-batch GRU forward on the CPU)
#              passes in the image; no data or results inside; with podman also the job command line of
#              container_shell_prefix (same-path volumes, $SLURM_TMPDIR, --env, requeue forwarding); CUDA.
#   Apptainer: a .sif from the image (each build runs %test); the runscript; the job command line
#              (same-path binds, $SLURM_TMPDIR, --env, the scontrol stand-in that records requeues); CUDA with --nv.
# Uses Docker when its engine answers, else podman (BASE=IMAGE BASE_TORCH=X.Y.Z build on a stand-in base,
# see docker/stand-in-base.sh). What it cannot check here (Apptainer missing, no GPU) it names at the end.
# Exits 2 when neither a Docker engine nor podman is there (tests/test_container.py skips for that reason).
# Usage: docker/verify-images.sh   (PYTHON=.venv/bin/python, VERIFY_DIR=build/verify-images, BASE, BASE_TORCH)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${VERIFY_DIR:-build/verify-images}
TAG=ptblm:latest  # ptblm.images.IMAGE_TAG, the tag docker/ptblm.def bootstraps from

if docker info > /dev/null 2>&1; then
    engine=docker
    run_image() { docker run --rm "$@"; }
elif command -v podman > /dev/null; then
    engine=podman
    podman=(podman --runtime runc --cgroup-manager cgroupfs)  # ptblm.container.PODMAN_GLOBAL_OPTIONS
    run_image() { "${podman[@]}" run --rm --network=none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$@"; }
else
    echo "verify-images: needs a Docker engine (docker info failed) or podman (not on PATH)" >&2
    exit 2
fi
unchecked=()
command -v apptainer > /dev/null ||
    unchecked+=("Apptainer (not on PATH): the .sif builds, its %test and runscript, binds and requeue under apptainer")

step() { echo "== $*"; }
container() { PYTHONPATH=src "$PYTHON" -c "from ptblm.container import *; from ptblm.images import *; $1"; }
has_gpu() { command -v nvidia-smi > /dev/null && nvidia-smi > /dev/null 2>&1; }
has_gpu || unchecked+=("CUDA (no working nvidia-smi): the GPU inside the image (--gpus, --nv)")
cuda_check='import torch; assert torch.cuda.is_available(), "no CUDA"; print("CUDA:", torch.cuda.get_device_name(0))'
mkdir -p "$OUT"

step "$engine build ($TAG${BASE:+ on $BASE})"
PYTHONPATH=src "$PYTHON" -m ptblm.cli image --engine "$engine" --tag "$TAG" ${BASE:+--base "$BASE"} \
    ${BASE_TORCH:+--build-arg "BASE_TORCH=$BASE_TORCH"} > /dev/null

step "$engine: the entrypoint is ptblm"
run_image "$TAG" --help | grep -q "usage: ptblm"

step "$engine: the %test section of docker/ptblm.def"
awk '/^%test/ {on = 1; next} /^%/ {on = 0} on' docker/ptblm.def |
    run_image -i --entrypoint /bin/sh "$TAG" -s

step "$engine: no data or results in the image"
run_image --entrypoint /bin/sh "$TAG" -c \
    'found=$(find / -xdev \( -name "ptb.*.txt" -o -name best.pt -o -name last.pt -o -name curves.json \) -print); [ -z "$found" ] || { echo "$found"; exit 1; }'

# check_job_line KIND IMAGE: the job-script command line of that runtime binds $SLURM_TMPDIR and records a requeue.
check_job_line() {
    local kind=$1 image=$2 bound="$OUT/bound-$1" prefix
    rm -rf "$bound" && mkdir -p "$bound/tmpdir"
    prefix=$(container "print(container_shell_prefix(ContainerSpec(image='$image', nv=False, kind='$kind',
        runtime='$kind', binds=job_binds('.', '$bound', '$bound'), env=requeue_env('$bound'))))")
    (
        export SLURM_JOB_ID=777 SLURM_TMPDIR="$(cd "$bound/tmpdir" && pwd)"
        eval "$prefix sh -c 'touch \"\$SLURM_TMPDIR/seen\" && scontrol requeue 777_1'"
    )
    test -f "$bound/tmpdir/seen"
    test "$(cat "$bound/requeue.777")" = 777_1
}

if [[ $engine == podman ]]; then
    step "podman: the job command line (volumes, \$SLURM_TMPDIR, --env, requeue forwarding)"
    check_job_line podman "$TAG"
fi

if has_gpu; then
    step "$engine: CUDA"
    if [[ $engine == docker ]]; then
        run_image --gpus all --entrypoint python "$TAG" -c "$cuda_check"
    else
        run_image --device nvidia.com/gpu=all --entrypoint python "$TAG" -c "$cuda_check"
    fi
fi

if command -v apptainer > /dev/null; then
    step "apptainer: .sif from a saved tar of the image (the build runs %test)"
    if [[ $engine == docker ]]; then docker save "$TAG" -o "$OUT/ptblm.tar"
    else "${podman[@]}" save --format docker-archive -o "$OUT/ptblm.tar" "$TAG"; fi
    container "build_sif('$OUT/ptblm.sif', '$OUT/ptblm.tar', 'docker/ptblm.def')"
    rm -f "$OUT/ptblm.tar"
    apptainer test "$OUT/ptblm.sif"
    if [[ $engine == docker ]]; then
        step "apptainer: .sif from the Docker daemon (the build runs %test)"
        container "build_sif('$OUT/from-daemon.sif', '$TAG', 'docker/ptblm.def')"
    fi

    step "apptainer: the runscript"
    apptainer run "$OUT/ptblm.sif" --help | grep -q "usage: ptblm"

    step "apptainer: the job command line (binds, \$SLURM_TMPDIR, --env, requeue forwarding)"
    check_job_line apptainer "$OUT/ptblm.sif"

    if has_gpu; then
        step "apptainer: CUDA with --nv"
        apptainer exec --nv "$OUT/ptblm.sif" python -c "$cuda_check"
    fi
fi

echo "verify-images: the $engine image built and passed every check above"
for what in "${unchecked[@]}"; do
    echo "verify-images: not checked here: $what"
done
