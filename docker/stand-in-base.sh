#!/usr/bin/env bash
# Build the stand-in base image (docker/stand-in-base.Containerfile) into podman's storage, unless it is
# there already (podman keeps it between runs on the same machine): Debian bookworm minbase by debootstrap,
# imported into podman, then a venv at /opt/conda with torch==$BASE_TORCH and numpy. pip inside reads this
# machine's pip configuration (`pip config list`: wheel folder, local indexes, CA bundle), bound read-only.
# Then: `make image ENGINE=podman BASE=<the tag printed last>`. As root; about 90 s the first time.
# Usage: docker/stand-in-base.sh   (PYTHON=.venv/bin/python, BASE_TORCH=2.13.0, MIRROR=http://deb.debian.org/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
BASE_TORCH=${BASE_TORCH:-2.13.0}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MINBASE=localhost/ptblm-bookworm-minbase:latest
TAG=localhost/ptblm-stand-in-base:torch$BASE_TORCH
podman=(podman --runtime runc --cgroup-manager cgroupfs)  # ptblm.container.PODMAN_GLOBAL_OPTIONS

if "${podman[@]}" image exists "$TAG"; then
    echo "stand-in-base: $TAG is already in podman's storage" >&2
    echo "$TAG"
    exit 0
fi
if ! "${podman[@]}" image exists "$MINBASE"; then
    rootfs=$(mktemp -d /var/tmp/ptblm-minbase.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "stand-in-base: debootstrap bookworm minbase from $MIRROR" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" \
        > "$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    tar -C "$rootfs" -c . | "${podman[@]}" import - "$MINBASE" > /dev/null
fi
echo "stand-in-base: a venv at /opt/conda with torch==$BASE_TORCH and numpy" >&2
PYTHONPATH=src "$PYTHON" -c "
from ptblm.images import build_image
build_image('$TAG', 'docker/stand-in-base.Containerfile', 'docker', engine='podman',
            build_args={'MINBASE': '$MINBASE', 'BASE_TORCH': '$BASE_TORCH'})
" >&2
echo "$TAG"
