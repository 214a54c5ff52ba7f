"""How every `promise` command ends: one rule for exit codes, and one red line for a mistake.

`PromiseGroup` is the click group class of the one command line (`promise_cli`) and of the
training commands' own app (`training.cli.app`, which tests call directly), so a command ends
the same way however it is reached:

- 0: done.
- 1: not done, and one red line on stderr says why: a `PromiseError` (bad spec, data, option
  value or setting, unknown version, a refused promotion) or a usage mistake (unknown option,
  missing or malformed value). Click's own code for usage mistakes is 2; here it is 1.
- 2: only `promise monitor`: a segment is flagged (for cron or CI).

Anything else is a bug and propagates with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from typer import Abort
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from models.errors import PromiseError

# Typer 0.29 vendors click as `typer._click` and re-exports only BadParameter: the other
# exceptions are imported from there (the project pins typer>=0.29).

EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_ALARM = 2
EXIT_CODES = (
    "Exit codes, the same for every command: 0 done; 1 not done, with one red line on stderr "
    "saying why (a user mistake, a bad option included, or a refusal); 2 only from `promise "
    "monitor`: a segment is flagged."
)


def say_error(message: str) -> None:
    """One red line on stderr: `error: <message>`."""
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )


class PromiseGroup(TyperGroup):
    """A Typer group whose commands exit 0, 1 or 2 by the rule above."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; with `standalone_mode` (a console script, CliRunner) exit
        with the rule's code, else return it."""
        try:
            code = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except NoArgsIsHelpError as shown:
            # `promise` (or a group) alone: the help is what was asked for.
            sys.stdout.write(shown.format_message() + "\n")
            code = EXIT_OK
        except ClickException as err:
            ctx = getattr(err, "ctx", None)  # a usage mistake knows its command
            hint = f"; see {ctx.command_path} --help" if ctx is not None else ""
            message = " ".join(err.format_message().split()).replace("Value error, ", "")
            say_error(message.rstrip(".") + hint)
            code = EXIT_NOT_DONE
        except PromiseError as err:
            say_error(str(err))
            code = EXIT_NOT_DONE
        except Abort:
            say_error("aborted")
            code = EXIT_NOT_DONE
        code = code if isinstance(code, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code
