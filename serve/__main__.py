"""``python -m structbert_lite.serve --artifact DIR``: the stub without the full CLI."""

import argparse
import sys

from structbert_lite.errors import StructbertLiteError

from .server import add_serve_arguments, serve_from_args


def main(argv=None) -> int:
    parser = add_serve_arguments(argparse.ArgumentParser(prog="python -m structbert_lite.serve", description=__doc__))
    args = parser.parse_args(argv)
    try:
        return serve_from_args(args)
    except StructbertLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # PortInUseError: 5


if __name__ == "__main__":
    sys.exit(main())
