"""The one command-line preamble of every stage (``python -m pipeline.ingest``, ``... extract`` ...).

A stage module defines ``run(...)`` and a two-line ``main``::

    def main(argv=None) -> int:
        ap = cli.parser("python -m pipeline.select", __doc__)
        return cli.run(ap, argv, lambda args: run(params_file=args.params))

Every stage then takes the same ``--params FILE`` (default ``params.yaml`` or
``$SYNCHRORAMA_PARAMS``), ``-v`` (debug detail) and ``-q`` (warnings only), logs as
``LEVEL logger: message``, and ends with one exit status DVC can act on:

* 0: done;
* 2: a configuration or input error the user can fix (params typo, missing weights folder, missing
  upstream output, a shard that breaks the format, a full disk or a read-only folder), printed as one line naming the file and the fix;
* 3: the stage wrote its outputs but must not pass (:class:`StageFailed`, e.g. more ``error:*``
  rejects than ``runner.max_error_fraction`` allows), so ``dvc repro`` stops instead of going on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable

from core.params import ParamsError
from core.shards import ShardFormatError
from core.storage import StorageError
from core.weights import WeightsError

log = logging.getLogger("stage")

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Errors a user fixes (exit status 2): they carry a message naming the file, the key and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ParamsError, WeightsError, ShardFormatError, FileNotFoundError, StorageError)


class StageFailed(RuntimeError):
    """The stage ran and wrote its outputs, but its result must stop the pipeline (exit status 3)."""


def parser(prog: str, doc: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser with the common stage options; ``doc``'s first paragraph is the description."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    ap.add_argument("--params", type=Path, default=None, help="params file (default: params.yaml or $SYNCHRORAMA_PARAMS)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug logging)")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return ap


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run(ap: argparse.ArgumentParser, argv: list[str] | None, body: Callable[[argparse.Namespace], Any],
        user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv``, set up logging, run ``body(args)`` and map its outcome to the exit status."""
    args = ap.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        body(args)
    except StageFailed as e:
        log.error("%s", e)
        return 3
    except USER_ERRORS + user_errors as e:
        log.error("%s", e)
        return 2
    return 0
