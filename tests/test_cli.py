"""The `kerasllm` command's skeleton: help, version, model summary."""

import argparse
import json
import re

import pytest

from kerasllm import __version__, cli


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out.split("positional arguments:")[1]
    listed = re.findall(r"^    (\S+)", listing, re.M)  # one entry per command
    subparsers = next(
        action for action in cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert listed == list(subparsers.choices)
    assert {"model", "pretrain", "generate", "export"} <= set(listed)


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"kerasllm {__version__}"


def test_model_summary_json_reports_about_124m_parameters(capsys):
    code, out, _ = run_cli(capsys, "model", "summary", "--preset", "gpt2-124m", "--json")
    assert code == 0
    summary = json.loads(out)  # exactly one JSON object on stdout
    assert 123e6 < summary["parameters"] < 126e6
    assert summary["parameters"] == summary["parameters_analytic"]
    assert summary["config"]["num_layers"] == 12


def test_model_summary_applies_overrides(capsys):
    code, out, _ = run_cli(
        capsys, "model", "summary", "--preset", "tiny", "--set", "num_layers=2",
        "--set", "position=rope", "--set", "tie_embeddings=false", "--json",
    )
    config = json.loads(out)["config"]
    assert (config["num_layers"], config["position"], config["tie_embeddings"]) == (2, "rope", False)


def test_model_summary_plain_text(capsys):
    code, out, _ = run_cli(capsys, "model", "summary", "--preset", "tiny")
    assert "parameters" in out and "num_layers" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "num_layer=3"], "Did you mean 'num_layers'"),
        (["--set", "hidden_dim=130"], "hidden_dim must be divisible by num_heads"),
        (["--set", "oops"], "--set expects key=value"),
    ],
)
def test_model_summary_bad_input_exits_2_with_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["model", "summary", "--preset", "tiny", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_preset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["model", "summary", "--preset", "gpt5"])
    assert exit_info.value.code == 2
    assert "Available presets" in capsys.readouterr().err
