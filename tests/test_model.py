import math

import pytest
import torch

from charmlp.errors import CharmlpError
from charmlp.model import CharMLP, ModelArgs, fold_batchnorm
from charmlp.trainer import build


def batch(V=27, T=3, B=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B,), generator=g)


@pytest.mark.parametrize("variant", [{}, {"batchnorm": False}, {"direct": True}])
def test_init_loss_is_near_uniform(variant):
    model = CharMLP(ModelArgs(**variant), torch.Generator().manual_seed(1))
    _, loss = model(*batch())
    assert abs(loss.item() - math.log(27)) < 0.05


def test_reference_init_matches_the_notebook_draw_order():
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((27, 10), generator=g)
    W1 = torch.randn((30, 200), generator=g) * (5 / 3) / 30**0.5
    W2 = torch.randn((200, 27), generator=g) * 0.01
    model = CharMLP(ModelArgs(), torch.Generator().manual_seed(2147483647))
    assert torch.equal(model.C, C) and torch.equal(model.W1, W1) and torch.equal(model.W2, W2)
    assert model.num_params() == 12097  # the notebook's 12,297 minus its unused b1


@pytest.mark.parametrize("direct", [False, True])
def test_batchnorm_folding_gives_the_same_logits(direct):
    model = CharMLP(ModelArgs(direct=direct), torch.Generator().manual_seed(0))
    with torch.no_grad():  # move running stats and gains away from their trivial init
        model.bnmean_running.normal_(0, 1)
        model.bnstd_running.uniform_(0.5, 3)
        model.bngain.uniform_(0.5, 2)
        model.bnbias.normal_(0, 1)
    model.eval()
    X, _ = batch()
    folded = fold_batchnorm(model)
    assert not folded.args.batchnorm
    torch.testing.assert_close(folded(X)[0], model(X)[0], atol=1e-5, rtol=0)


def test_zero_init_never_breaks_symmetry(make_cfg, tmp_path):
    from charmlp.trainer import train
    cfg = make_cfg("model=mlp_nobn", "model.init=zero", "trainer.engine=reference")
    train(cfg, tmp_path)
    from charmlp.checkpoint import load_checkpoint
    model, _, _ = load_checkpoint(tmp_path)
    # Every hidden unit sees the same gradient, so all stay identical (here: all zero).
    assert torch.equal(model.W1, model.W1[:, :1].expand_as(model.W1))
    assert torch.equal(model.W2, model.W2[:1].expand_as(model.W2))
    assert model.b2.abs().sum() > 0  # the output bias still learns the unigram


@pytest.mark.parametrize("key", ["n_embd", "n_hidden"])
def test_non_positive_sizes_are_rejected(key):
    with pytest.raises(CharmlpError, match=f"{key}=0 must be a positive"):
        ModelArgs(**{key: 0})


@pytest.mark.parametrize("kwargs, message", [
    ({"bn_momentum": "abc"}, "model.bn_momentum='abc' must be a number"),
    ({"bn_momentum": -0.1}, "model.bn_momentum=-0.1 must be in [0, 1]"),
    ({"bn_momentum": 2}, "model.bn_momentum=2 must be in [0, 1]"),
    ({"batchnorm": "abc"}, "model.batchnorm='abc' must be true or false"),
    ({"direct": 1}, "model.direct=1 must be true or false"),
    ({"n_embd": "abc"}, "model.n_embd='abc' must be an integer"),
    ({"n_hidden": 2.5}, "model.n_hidden=2.5 must be an integer"),
])
def test_bad_model_settings_are_one_line_naming_the_setting(kwargs, message):
    with pytest.raises(CharmlpError) as e:
        ModelArgs(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bn_momentum", [0, 0.001, 1])
def test_bn_momentum_accepts_its_whole_range_as_given(bn_momentum):
    assert ModelArgs(bn_momentum=bn_momentum).bn_momentum is bn_momentum


@pytest.mark.parametrize("model", ["mlp", "mlp_nobn", "bengio"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_group_member_composes_and_builds(make_cfg, model, optimizer):
    cfg = make_cfg(f"model={model}", f"optimizer={optimizer}")
    tc, data, net, opt, _ = build(cfg)
    assert net.args.batchnorm == (model != "mlp_nobn")
    assert net.args.direct == (model == "bengio")
    assert type(opt).__name__.lower() == optimizer and net.args.vocab_size == len(data.vocab)


@pytest.mark.parametrize("schedule", ["step", "cosine", "linear", "constant"])
def test_every_schedule_composes(make_cfg, schedule):
    cfg = make_cfg(f"optimizer/schedule={schedule}")
    _, _, _, opt, _ = build(cfg)
    lrs = [opt.lr_at(s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(opt.lr) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    if schedule == "step":  # the reference: 0.1 for the first half, 0.01 after
        assert lrs[49] == 0.1 and lrs[50] == pytest.approx(0.01)
