"""`promise`: the one command line, the training commands and the service's in one Typer app.

The only module that imports both sides (`training.cli`, `service.commands`), so those two stay
independent. `promise --help` lists every command and the exit codes (`training.exits`, one
rule for all); `promise --version` prints the installed version; `promise
--install-completion` adds shell completion. `python -m promise_cli ...` is the same program.

`promise serve --workers N` starts uvicorn workers with the spawn method, which re-imports this
module in each worker: it, and what it imports at module level, load nothing heavy (no pandas,
scikit-learn, scipy, pyarrow, matplotlib or joblib; `tests/test_cli_one_app.py` checks a
worker).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

# The service first: its package imports numba with scipy hidden, as a serving worker must.
from service import commands as service_commands
from training import cli as training_cli
from training.exits import EXIT_CODES, PromiseGroup, say_error

DISTRIBUTION = "promise-engine"  # the name on the package index ("promise" is another library)

app = typer.Typer(
    cls=PromiseGroup,
    name="promise",
    no_args_is_help=True,
    help="Promise: calibrated order promises from your order history.",
    epilog=EXIT_CODES,
)
app.add_typer(training_cli.app)
app.add_typer(service_commands.app)


def _print_version(asked: bool) -> None:
    if not asked:
        return
    try:
        typer.echo(f"{DISTRIBUTION} {version(DISTRIBUTION)}")
    except PackageNotFoundError:
        say_error(f"{DISTRIBUTION} is not installed: pip install -e . in the repository")
        raise typer.Exit(1) from None
    raise typer.Exit(0)


@app.callback()
def promise(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Promise: calibrated order promises from your order history."""


def main() -> None:
    """The console script `promise`."""
    app()


if __name__ == "__main__":
    main()
