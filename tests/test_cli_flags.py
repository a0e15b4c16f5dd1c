"""The flags themselves: each exists where it is named, has help and a default; parsing is fast."""

import argparse
import ast
import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from jaxdd import cli
from jaxdd import config as cfg
from jaxdd.data.noise import make_noisy
from jaxdd.data.registry import load_dataset
from jaxdd.distill import check_config
from jaxdd.errors import DataUnavailableError
from jaxdd.validate import check_data

ROOT = pathlib.Path(__file__).parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w-])")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"jaxdd": parser, **sub.choices}


def _explained(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` with the help texts --help fills in from the config classes."""
    for action in parser._actions:
        if isinstance(action, cli._SettingsHelp):
            action.explain(parser)
    return parser


def _strings(tree: ast.AST):
    """Every string literal of a module, f-strings' literal parts included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_every_flag_a_message_or_docstring_names_exists():
    flags = {flag for p in _commands().values() for a in p._actions for flag in a.option_strings}
    missing = []
    for path in sorted((ROOT / "jaxdd").rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text())):
            for flag in FLAG.findall(text):
                if flag not in flags:
                    missing.append(f"{path.relative_to(ROOT)}:{line}: {flag}")
    assert not missing, "flags named in jaxdd/ that no parser has:\n" + "\n".join(missing)


def test_parsing_and_usage_errors_do_not_import_jax():
    code = (
        "import sys, jaxdd, jaxdd.cli as cli\n"
        "cli._parser()\n"
        "assert cli.main(['baseline', '--kind', 'nope']) == 2\n"
        "assert cli.main(['distill', '--set', 'no-equals-sign']) == 2\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "jaxdd.load_dataset, jaxdd.ConfigError\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", ["datasets", "baseline", "distill", "demo"])
def test_every_flag_has_help_that_gives_its_default(command):
    parser = _explained(_commands()[command])
    for action in parser._actions:
        helps = (cli._SettingsHelp, argparse._HelpAction)
        if action.option_strings and not isinstance(action, helps):
            assert action.help and "default" in action.help, action.option_strings


def test_distill_help_lists_every_setting_with_its_default(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["distill", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    from jaxdd.distill import DistillConfig

    for path in cfg.paths(DistillConfig()):
        assert re.search(rf"^  {re.escape(path)}=\S", text, re.MULTILINE), path
    assert re.search(r"^  datm\.ipc=10 +synthetic images per class$", text, re.MULTILINE)
    flat = " ".join(text.split())
    assert (
        "--ipc IPC synthetic images per class (sets datm.ipc, or dm.ipc / dance.ipc with "
        "--method dm / dance; default: 10)" in flat
    )


def _readme_commands() -> list[list[str]]:
    """The `jaxdd baseline|distill|sweep` lines of README's shell blocks, as argument lists.

    A command whose ``--config`` is a file an earlier command writes under
    ``runs/`` (a sweep's ``chosen.json``) is left out: it exists only after that one.
    """
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    joined = [block.replace("\\\n", " ") for block in blocks]
    lines = [line.split("  #")[0] for block in joined for line in block.splitlines()]
    return [
        shlex.split(line)[1:]
        for line in lines
        if re.match(r"jaxdd (baseline|distill|sweep) ", line)
        and "..." not in line
        and "--config runs/" not in line
    ]


@pytest.mark.parametrize("argv", _readme_commands(), ids=" ".join)
def test_readme_commands_run_as_written(argv, capsys):
    args = cli._parser().parse_args(argv)
    command = cli._baseline_config if args.command == "baseline" else cli._distill_config
    config = command(args)
    if args.command == "distill":
        check_config(config)
    if args.command == "sweep":
        from jaxdd import sweep

        sweep.grid(config, [sweep.parse_axis(text) for text in args.axis])  # every point
    if config.dataset.startswith("npz:"):
        return  # the reader's own file
    try:
        ipc = config.ipc if args.command == "baseline" else config.settings.ipc
        check_data(config.dataset, config.noise, noise_seed=0, max_train=None, ipc=ipc)
    except DataUnavailableError:
        pytest.skip(f"{config.dataset} is not on this machine")


def test_asymmetric_noise_takes_a_class_map_on_the_command_line(capsys):
    assert cli.main(["baseline", "--noise", "asymmetric:0.5:1=7,7=1", "--show-config"]) == 0
    noisy = make_noisy(load_dataset("digits"), "asymmetric:0.5:1=7,7=1", seed=0)
    flipped = ~noisy.is_clean
    clean = load_dataset("digits").y_train[flipped]
    assert set(np.unique(clean)) == {1, 7} and np.all(noisy.labels[flipped] == 8 - clean)


def test_a_missing_map_says_how_to_give_one_and_the_example_works(tmp_path, capsys):
    assert cli.main(["baseline", "--noise", "asymmetric:0.4", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    (example,) = re.findall(r"e\.g\. --noise (\S+)", err)
    check_data("digits", example, noise_seed=0, max_train=None, ipc=10)
    assert cli.main(["baseline", "--noise", "asymmetric:0.4:1>7", "--out", str(tmp_path)]) == 2
    assert "class map entry '1>7' is not SOURCE=TARGET" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
