"""Command line: `{{ cookiecutter.project_slug }} train ...` or `{{ cookiecutter.project_slug }} serve`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

# torch warns once when NumPy is absent; this project does not need NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

from . import __version__, logs  # noqa: E402
from .settings import Settings, SettingsError, describe  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line on stderr (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1 to 65535)")
    return port


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=os.environ.get("HOST", "0.0.0.0"), help="address to listen on (HOST)"
    )
    parser.add_argument(
        "--port", type=port_number, default=os.environ.get("PORT", "8000"),
        help="port to listen on (PORT)",
    )  # fmt: skip
    parser.add_argument(
        "--model", type=Path, help="the checkpoint to serve (default: MODEL_PATH, see below)"
    )


def parser() -> argparse.ArgumentParser:
    from . import train

    formatter = argparse.ArgumentDefaultsHelpFormatter
    root = OneLineParser(prog="{{ cookiecutter.project_slug }}")
    root.add_argument("--version", action="version", version=__version__)
    commands = root.add_subparsers(dest="command", required=True)
    train.add_arguments(
        commands.add_parser(
            "train", help="train the model, write a checkpoint", formatter_class=formatter
        )
    )
    add_serve_arguments(
        commands.add_parser(
            "serve",
            help="run the HTTP inference service",
            epilog=describe(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return root


def main(argv: list[str] | None = None) -> int:
    from .seam import SeamError

    try:
        cli = parser()  # imports model.py
    except SeamError as error:
        print(f"{{ cookiecutter.project_slug }}: error in model.py: {error}", file=sys.stderr)
        return 1
    args = cli.parse_args(argv)
    from . import distributed, train
    from .checkpoint import CheckpointError

    # Expected failures end in one line on stderr and a non-zero status, never a traceback.
    try:
        status = run(args)
    except (CheckpointError, SettingsError, train.TrainingError) as error:
        print(f"{cli.prog} {args.command}: error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    if args.command == "train" and distributed.launched():
        distributed.exit_worker(status)
    return status


def run(args: argparse.Namespace) -> int:
    from . import train

    settings = Settings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    if args.command == "train":
        return train.run(args)
    if args.model:  # the workers read it from the environment too
        os.environ["MODEL_PATH"] = str(args.model)
        settings = Settings.from_env()
    from .service import serve

    serve(args.host, args.port, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
