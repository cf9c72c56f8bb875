import os
import subprocess

import pytest
import torch

from charmlp.checkpoint import load_checkpoint
from charmlp.errors import CharmlpError
from charmlp.sample import generate, main
from charmlp.trainer import train
from conftest import run_cli


def test_samples_are_strings_over_the_vocabulary(make_cfg, tmp_path, capsys):
    train(make_cfg("trainer.steps=300"), tmp_path)
    model, vocab, _ = load_checkpoint(tmp_path)
    ids = generate(model, 30, torch.Generator().manual_seed(0))
    assert len(ids) == 30 and all(0 < i < len(vocab) for seq in ids for i in seq)
    assert main([str(tmp_path), "-n", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    for line in lines:
        name, label = line[:20].strip(), line[20:].strip()
        assert set(name) <= set(vocab.chars[1:]) and label in ("new", "in train", "in dev")


def test_sample_without_checkpoint_is_one_line(tmp_path):
    r = run_cli("charmlp-sample", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no checkpoint" in r.stderr


@pytest.mark.parametrize("content", [
    b"",                                    # EOFError
    b"not a checkpoint\n",                  # UnpicklingError
    "truncated",                            # a real torch file cut short: RuntimeError
    [1, 2, 3],                              # a torch file, but not a charmlp checkpoint
])
def test_unreadable_checkpoint_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        torch.save({"model_state": {"w": torch.zeros(100, 100)}}, path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save(content, path)
    with pytest.raises(CharmlpError, match="is not a readable charmlp checkpoint"):
        load_checkpoint(tmp_path)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path} is not a readable charmlp checkpoint" in err and "fix: " in err


@pytest.mark.parametrize("n", ["0", "-2"])
def test_sample_needs_at_least_one_name(tmp_path, capsys, n):
    assert main([str(tmp_path), "-n", n]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"charmlp-sample: error: -n {n} must be at least 1; fix: pass -n 1 or more\n"


def test_names_the_output_encoding_cannot_show_are_escaped(make_cfg, tmp_path):
    data = tmp_path / "accented.txt"
    data.write_text("\n".join(["zoë", "josé", "chloé", "léa", "noé"] * 60), encoding="utf-8")
    run = tmp_path / "run"
    train(make_cfg(f"data.path={data}"), run)
    r = subprocess.run(["charmlp-sample", str(run), "-n", "10"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10 and "\\xe9" in r.stdout  # é, escaped rather than a crash
