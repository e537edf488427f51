"""Command line: `{{ cookiecutter.project_slug }} train ...` or `{{ cookiecutter.project_slug }} serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project_slug }}")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    from . import train

    train.add_arguments(commands.add_parser("train", help="train the model, write a checkpoint"))
    serve = commands.add_parser("serve", help="run the HTTP inference service")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "train":
        return train.run(args)
    from .service import serve as run_service

    run_service(args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
