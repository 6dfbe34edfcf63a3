"""The ``harness`` command line: one module per command group, assembled here."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from harness import __version__
from harness.api.errors import HarnessError

DEBUG_ENV = "HARNESS_DEBUG"


class _Group(TyperGroup):
    """Turns expected errors into one line on stderr and an exit code, not a traceback."""

    def invoke(self, ctx):  # noqa: D102 - click API
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted (finished stages are cached; rerun to resume)", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):  # usage errors and normal exits
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if os.environ.get(DEBUG_ENV) or isinstance(exc, typer.TyperException):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else ""
            typer.echo(f"error: {type(exc).__name__}: {msg} (rerun with --debug for the traceback)",
                       err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Benchmark harness for visual learning supervised by ambient sound.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verify_cache: bool = typer.Option(
        False, "--verify-cache", help="Key cached results by the content (sha256) of the data "
        "files, not their size and modification time: reads every file once, catches a file "
        "replaced with its old time restored (same as HARNESS_VERIFY_CACHE=1)."),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if verify_cache:
        from harness.runtime.cache import VERIFY_ENV

        os.environ[VERIFY_ENV] = "1"


def _assemble() -> None:
    from harness.cli import (data, evaluate, features, label, leaderboard, plugins, pretrain,
                             run)

    app.command("plugins")(plugins.plugins)
    app.command("features")(features.features)
    app.command("label")(label.label)
    app.command("pretrain")(pretrain.pretrain)
    app.command("eval")(evaluate.evaluate)
    app.command("run")(run.run)
    app.command("sweep")(run.sweep)
    app.command("leaderboard")(leaderboard.leaderboard)
    app.command("figures")(leaderboard.figures)
    from harness.cli import label_truth

    app.command("label-truth")(label_truth.label_truth)
    app.add_typer(data.app, name="data", help="Build clip datasets and VOC folders.")


_assemble()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
