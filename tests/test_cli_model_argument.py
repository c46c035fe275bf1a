"""`--model` that cannot be loaded fails before any download or model run, with the documented exit code (3) and a
message naming it; a local-looking path is never sent to the Hub. Also the shared CLI vocabulary: exit codes in
`anyecg --help`, `plot --input-format` (old `--format` kept as a deprecated alias), `evaluate --windowing`, and
`plot --condition` checked against the model's label space before the model runs."""

from __future__ import annotations

import os

import pytest

from hub_server import FakeHub

from anyecg_hf.cli import main as cli_main
from anyecg_hf.prediction.default_model import looks_like_local_path

ECG = ("data", "cinc2021", "HR06000.hea")


@pytest.mark.parametrize("name, local", [
    ("./typo-folder", True), ("../models/x", True), ("/abs/model", True), ("~/models/x", True),
    ("runs/diag/final", True), ("a/b/c", True), (".", True),
    ("org/name", False), ("nonexistent-folder", False), ("PKUDigitalHealth/ECGFounder", False),
])
def test_local_looking_paths(name, local):
    assert looks_like_local_path(name) is local


def test_existing_folder_is_local_even_when_it_looks_like_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert looks_like_local_path("org/name")


@pytest.mark.parametrize("command", ["profile", "embed", "plot", "evaluate", "export-onnx", "report"])
def test_missing_local_folder_fails_with_exit_3_and_no_hub_request(command, assets, tmp_path, monkeypatch, capsys):
    ecg = str(assets.joinpath(*ECG))
    args = {
        "profile": ["profile", ecg, "--out", str(tmp_path / "p.csv"), "--model", "./typo-folder"],
        "embed": ["embed", ecg, "--out", str(tmp_path / "e.csv"), "--model", "./typo-folder"],
        "plot": ["plot", ecg, "--out", str(tmp_path / "x.png"), "--model", "./typo-folder"],
        "evaluate": ["evaluate", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "r"),
                     "--model", "./typo-folder"],
        "export-onnx": ["export-onnx", "./typo-folder", str(tmp_path / "m.onnx")],
        "report": ["report", ecg, "--out", str(tmp_path / "rep"), "--model", "./typo-folder"],
    }[command]
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        code = cli_main(args)
        assert hub.requests == []  # never sent to the Hub
    err = capsys.readouterr().err
    assert code == 3, err
    assert "'./typo-folder' does not exist" in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "x.png").exists()


def test_folder_without_config_is_not_a_model(assets, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli_main(["profile", str(assets.joinpath(*ECG)), "--model", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "p.csv")])
    assert code == 3 and "has no config.json" in capsys.readouterr().err


def test_uncached_hub_id_fails_at_once_offline_or_unreachable(assets, tmp_path, monkeypatch, capsys):
    ecg = str(assets.joinpath(*ECG))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli_main(["profile", ecg, "--model", "nonexistent-folder", "--out", str(tmp_path / "p.csv")]) == 3
    err = capsys.readouterr().err
    assert "'nonexistent-folder' is not a local folder" in err and "HF_HUB_OFFLINE" in err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert cli_main(["profile", ecg, "--model", "nonexistent-folder", "--out", str(tmp_path / "p.csv")]) == 3
    err = capsys.readouterr().err
    assert "'nonexistent-folder' is not a local folder" in err and "cannot be reached" in err


def test_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes (every subcommand)" in out and "3    the model could not be loaded" in out


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return tiny_model_dir


def test_plot_unknown_condition_fails_before_the_model_runs(tiny_model, assets, tmp_path, monkeypatch, capsys):
    import anyecg_hf.prediction as prediction

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before --condition was checked")

    monkeypatch.setattr(prediction, "load_model_and_extractor", must_not_load)
    code = cli_main(["plot", str(assets.joinpath(*ECG)), "--model", str(tiny_model), "--condition", "unknown",
                     "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and "--condition: Condition 'unknown' is not in the model's diagnosis label space" in err
    assert not (tmp_path / "x.png").exists()


def test_plot_input_format_and_its_deprecated_alias(tiny_model, assets, tmp_path, capsys):
    ecg = str(assets.joinpath(*ECG))
    assert cli_main(["plot", ecg, "--input-format", "wfdb", "--no-model", "--out", str(tmp_path / "a.png")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert cli_main(["plot", ecg, "--format", "wfdb", "--no-model", "--out", str(tmp_path / "b.png")]) == 0
    assert "--format is deprecated" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "b.png").stat().st_size > 0


def test_offline_default_model_fails_before_torch_is_imported(assets, tmp_path):
    """The README's main job offline with nothing cached: exit 3 with instructions, decided before torch (and the
    job engine) is imported, which is what makes it fail within a second."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        from anyecg_hf.cli import main
        rc = main(["profile", {str(assets.joinpath(*ECG))!r}, "--out", {str(tmp_path / "p.csv")!r}])
        print("RC", rc, "TORCH", "torch" in sys.modules)
    """)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("ANYECG_CACHE", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "RC 3 TORCH False" in r.stdout, r.stderr[-2000:]
    assert "The default ECG model" in r.stderr and "--model PATH" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr
