"""How the photodrag command ends: one line per error and fixed exit codes.

2 for bad usage or input, 1 for an internal failure or a full disk, 130 when interrupted (Ctrl-C),
143 when terminated (SIGTERM, handled like Ctrl-C: finished stages kept, temp files removed).
`--verbose` adds the traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from typing import Iterator, Optional

import click

from common.errors import PhotodragError
from common.fileio import disk_full_error, is_disk_full


def click_message(exc: click.ClickException) -> str:
    """One line for a click error, naming the command's --help when it is a usage error."""
    msg = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        msg = msg.rstrip(".") + f"; see `{ctx.command_path} --help`"
    return msg


class Terminated(BaseException):
    """SIGTERM (sent by `timeout`, systemd, `docker stop`), raised in the main thread like Ctrl-C's
    KeyboardInterrupt, so every `finally` runs: temp files are removed, finished stages stay."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not interrupt the clean-up
    raise Terminated()


@contextlib.contextmanager
def _sigterm_handled() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the command runs (the previous handler comes back after)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _disk_full_message(exc: BaseException) -> str:
    path = getattr(exc, "filename", None)
    if path:
        return str(disk_full_error(path))
    return f"no space left on device ({' '.join(str(exc).split())}); free some space and run again"


def run_cli(cli: click.Group, argv=None, obj: Optional[dict] = None) -> None:
    """Run the click group `cli` as `photodrag`, with one-line errors and fixed exit codes; `obj`
    starts the click context's object (what main() passes down to the commands)."""
    verbose = "--verbose" in (argv if argv is not None else sys.argv[1:])
    with _sigterm_handled():
        _run(cli, argv, verbose, obj)


def _run(cli: click.Group, argv, verbose: bool, obj: Optional[dict]) -> None:
    try:
        cli.main(args=argv, prog_name="photodrag", standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare command group: show its help as help
        click.echo(exc.format_message(), err=True)
        sys.exit(2)
    except click.ClickException as exc:  # click's own usage errors, in the tool's one-line style
        click.echo(f"photodrag: error: {click_message(exc)}", err=True)
        sys.exit(2)
    except (click.Abort, KeyboardInterrupt):
        click.echo("photodrag: interrupted; finished files are kept, unfinished ones were discarded", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("photodrag: terminated (SIGTERM); finished files are kept, unfinished ones were discarded", err=True)
        sys.exit(143)
    except PhotodragError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(f"photodrag: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything else is our bug, or a full disk
        if verbose:
            traceback.print_exc()
        if is_disk_full(exc):
            click.echo(f"photodrag: error: {_disk_full_message(exc)}", err=True)
            sys.exit(1)
        click.echo(f"photodrag: internal error: {type(exc).__name__}: {exc} (run with --verbose for details)", err=True)
        sys.exit(1)
    sys.exit(0)
