"""`promise`, the one command line: every command in one app, one rule for exit codes, policy
choices checked before any data is read, `--version`, shell completion, and `serve --check`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

import models.policies
from models.policy_names import POLICY_NAMES
from promise_cli import app
from tests.service.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMISE = Path(sys.executable).parent / "promise"
COMMANDS = (
    "train",
    "backtest",
    "models",
    "promote",
    "rollback",
    "rebuild-serving",
    "sample-data",
    "serve",
    "import-outcomes",
    "monitor",
)
runner = CliRunner()


def _words(text: str) -> str:
    """The text with the help's box drawing and line breaks reduced to single spaces."""
    return " ".join(text.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def test_the_help_lists_every_command_and_the_exit_codes() -> None:
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    listed = {line.split()[1] for line in shown.stdout.splitlines() if line.startswith("│ ")}
    assert set(COMMANDS) <= listed
    said = _words(shown.stdout)
    assert "Exit codes, the same for every command: 0 done; 1 not done" in said
    assert "2 only from `promise monitor`: a segment is flagged" in said
    assert "--install-completion" in said and "--show-completion" in said and "--version" in said
    alone = runner.invoke(app, [])
    assert alone.exit_code == 0 and _words(alone.stdout) == _words(shown.stdout)


def test_python_m_promise_cli_is_the_same_program() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "promise_cli", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (0, f"promise-engine {version('promise-engine')}\n")


def test_version_prints_the_installed_distribution() -> None:
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0
    assert shown.stdout == f"promise-engine {version('promise-engine')}\n"


def test_every_light_policy_name_makes_its_policy() -> None:
    made = {name: models.policies.make_policy(name) for name in POLICY_NAMES}
    assert len({type(policy) for policy in made.values()}) == len(POLICY_NAMES)


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_policy_lists_its_choices_in_the_help(command: str) -> None:
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    options = [line for line in shown.stdout.splitlines() if "--policy" in line]
    assert len(options) == 1 and "|".join(POLICY_NAMES) in options[0]


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_a_bad_policy_is_refused_before_any_data_is_read(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-spec.toml"
    refused = runner.invoke(app, [command, "--spec", str(missing), "--policy", "psychic"])
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == "" and refused.stderr.count("\n") == 1
    said = refused.stderr
    assert said.startswith("error: Invalid value for '--policy': 'psychic' is not one of")
    assert all(repr(name) in said for name in POLICY_NAMES)
    assert f"see promise {command} --help" in said
    # With a good policy the same command goes on to read the spec, and fails there.
    read = runner.invoke(app, [command, "--spec", str(missing), "--policy", "conformal"])
    assert read.exit_code == 1 and str(missing) in read.stderr and "psychic" not in read.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["train"], "error: Missing option '--spec'"),
        (["tarin"], "error: No such command 'tarin'"),
        (["models", "--wiide"], "error: No such option: --wiide"),
        (["train", "--spec", "x.toml", "--backtest-folds", "-1"], "error: Invalid value for"),
        (["serve", "--workers", "0"], "error: Invalid value for '--workers'"),
        (["monitor", "--window-days", "soon"], "error: Invalid value for '--window-days'"),
    ],
)
def test_every_usage_mistake_is_one_red_line_and_exit_1(args: list[str], says: str) -> None:
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == "" and refused.stderr.startswith(says)
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


def test_serve_check_says_whether_the_server_could_start(tmp_path: Path) -> None:
    env = {"PROMISE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    port = free_port()
    fine = runner.invoke(app, ["serve", "--check", "--port", str(port)], env=env)
    assert fine.exit_code == 0, fine.output
    assert fine.stdout == f"can serve on http://127.0.0.1:{port}\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = runner.invoke(app, ["serve", "--check", "--port", str(taken)], env=env)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(
        f"error: refusing to start: cannot listen on 127.0.0.1:{taken}"
    )
    public = runner.invoke(app, ["serve", "--check", "--host", "0.0.0.0"], env=env)
    assert public.exit_code == 1
    assert public.stderr.startswith("error: refusing to listen on 0.0.0.0 without API keys")
    bad = runner.invoke(app, ["serve", "--check"], env={"PROMISE_DATABASE_URL": "mysql://db/x"})
    assert bad.exit_code == 1 and bad.stderr.startswith("error: refusing to start: PROMISE_")


def _complete(words: str) -> list[str]:
    """What bash completion offers for the last of `words`, asked of the console script."""
    env = {
        **os.environ,
        "_PROMISE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    ran = subprocess.run(
        [str(PROMISE)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.split()


def test_shell_completion_offers_commands_and_policy_choices() -> None:
    assert _complete("promise mon") == ["monitor"]
    assert _complete("promise re") == ["rebuild-serving"]
    assert _complete("promise train --policy con") == ["conformal"]
    shown = runner.invoke(app, ["--show-completion", "bash"])
    assert shown.exit_code == 0 and "_PROMISE_COMPLETE=complete_bash" in shown.stdout
