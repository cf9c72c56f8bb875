import torch

from charmlp.checkpoint import load_checkpoint
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
