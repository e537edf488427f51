"""Command line: `{{ cookiecutter.project_slug }} train ...` or `{{ cookiecutter.project_slug }} serve`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

# torch warns once when NumPy is absent; this project does not need NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

from . import __version__, logs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project_slug }}")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    from . import train

    train.add_arguments(commands.add_parser("train", help="train the model, write a checkpoint"))
    serve = commands.add_parser("serve", help="run the HTTP inference service")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    args = parser.parse_args(argv)
    from .model import CheckpointError
    from .settings import Settings, SettingsError

    # Expected failures end in one line on stderr and a non-zero status, never a traceback.
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_format, os.environ.get("LOG_LEVEL", "INFO").upper())
        if args.command == "train":
            return train.run(args)
        from .service import serve as run_service

        run_service(args.host, args.port, settings)
    except (CheckpointError, SettingsError, train.TrainingError) as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
