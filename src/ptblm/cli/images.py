"""`ptblm image` and `sif`: the container images jobs can run in."""
from __future__ import annotations

import argparse
from pathlib import Path

from .types import path_flag


def cmd_image(args: argparse.Namespace) -> int:
    from ..images import build_image

    build_args = dict(pair.partition("=")[::2] for pair in args.build_arg)
    build_image(args.tag, Path("docker/Dockerfile"), Path("."), engine=args.engine, base=args.base,
                build_args=build_args)
    if args.engine == "podman":
        print(f"built {args.tag} in podman's storage; set `container: {args.tag}` and `container_runtime: podman` "
              f"in a cluster profile to run jobs inside it")
    else:
        print(f"built {args.tag}; next: `make sif` here, or `docker save {args.tag} -o ptblm.tar` and "
              f"`make sif FROM_TAR=ptblm.tar` where Apptainer is")
    return 0


def add_image(commands) -> None:
    from ..images import IMAGE_TAG

    image = commands.add_parser("image", help="docker (or podman) build of docker/Dockerfile")
    image.add_argument("--tag", default=IMAGE_TAG, help=f"the image's name (default {IMAGE_TAG})")
    image.add_argument("--engine", choices=("docker", "podman"), default="docker",
                       help="which builds it (default docker)")
    image.add_argument("--base", help="podman: this image in place of the Dockerfile's FROM (e.g. a stand-in base)")
    image.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                       help="e.g. BASE_TORCH=2.13.0 for a base with another torch")
    image.set_defaults(handler=cmd_image)


def cmd_sif(args: argparse.Namespace) -> int:
    from ..images import build_sif
    from ..layout import output_dir

    output_dir(args.out.resolve().parent, "--out")
    build_sif(args.out, args.from_tar or args.tag, Path("docker/ptblm.def"))
    print(f"wrote {args.out}; copy it to the cluster and set `container: /path/to/{args.out.name}` in its profile")
    return 0


def add_sif(commands) -> None:
    from ..images import IMAGE_TAG

    sif = commands.add_parser("sif", help="Apptainer .sif from the Docker image or a saved tar (runs its %%test)")
    sif.add_argument("--from-tar", type=path_flag, help="a `docker save` tar built elsewhere")
    sif.add_argument("--tag", default=IMAGE_TAG,
                     help=f"the Docker image to convert, without --from-tar (default {IMAGE_TAG})")
    sif.add_argument("--out", type=path_flag, default=Path("ptblm.sif"), help="the .sif to write (default ptblm.sif)")
    sif.set_defaults(handler=cmd_sif)
