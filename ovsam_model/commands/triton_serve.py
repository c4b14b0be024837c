"""`ovsam-model triton-serve`: serve a repository with the Triton server bundled in nvidia-pytriton.

    ovsam-model triton-serve --repo REPO [--http-port 8000] [--log FILE]

For this machine and CI (CPU; `scripts/setup` builds the server's venv, .triton-venv). On a GPU
server use NVIDIA's container instead (docs/triton.md). Runs until Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("triton-serve", help="serve a Triton repository with the bundled server (CPU)")
    parser.add_argument("--repo", required=True, metavar="REPO", help="a repository from `ovsam-model triton-repo`")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--log", default=None, metavar="FILE", help="the server's log (default: discarded)")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the models to load")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ovsam_model.triton.local_server import LocalTritonServer, TritonServerError

    server = LocalTritonServer(args.repo, http_port=args.http_port, log_path=args.log)
    try:
        server.start(ready_timeout_s=args.ready_timeout)
    except TritonServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"serving {args.repo} on {server.url} (HTTP); point nodes at it: -p inference_server:={server.url}",
          flush=True)
    try:
        while server.is_running():
            time.sleep(1.0)
        print("error: the server exited; see its log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
