"""`python -m shopflow.config --markdown | --env-example | --update [ROOT] | --check`: the settings table of
docs/settings.md, the block of .env.example (both generated from shopflow.config.options), both written into those
files (between their marker lines, in the repository at ROOT), or a check of this environment's settings."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shopflow.common.errors import ConfigurationError
from shopflow.config import options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopflow.config", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the settings table (docs/settings.md)")
    what.add_argument("--env-example", action="store_true", help="print the settings block of .env.example")
    what.add_argument("--update", metavar="ROOT", nargs="?", const=".",
                      help="rewrite the generated regions of docs/settings.md and .env.example under ROOT (default .)")
    what.add_argument("--check", action="store_true", help="validate every SHOPFLOW_* variable of this environment")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(options.markdown())
    elif args.env_example:
        sys.stdout.write(options.env_example())
    elif args.update:
        for name, (begin, end, _) in options.GENERATED.items():
            path = Path(args.update) / name
            text = path.read_text()
            new = options.with_region(text, begin, end, options.region_body(name))
            if new != text:
                path.write_text(new)
            print(f"{path}: {'updated' if new != text else 'up to date'}")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            found = options.check_environment()
        except ConfigurationError as exc:
            print(f"shopflow: {exc}", file=sys.stderr)
            return 2
        print(f"{len(found)} SHOPFLOW_* settings set, all valid ({len(options.OPTIONS)} declared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
