"""Every engine reproduces the reference loop: same batches, same losses, same parameters."""
import logging
import platform
import random

import pytest

from conftest import native_available
import torch

from charmlp.data import Vocab, build_examples, split_words
from charmlp.engines import engine_class, native, select_engine
from charmlp.evaluate import split_loss
from charmlp.model import ModelArgs, CharMLP
from charmlp import native_build
from charmlp.optim import SGD, AdamW, Cosine, Step

STEPS, BATCH, SEED = 200, 32, 2147483647
OPTIMIZERS = {
    "sgd-step": lambda: SGD(lr=0.1, schedule=Step()),
    "sgd-momentum-wd": lambda: SGD(lr=0.05, momentum=0.9, weight_decay=0.01, schedule=Step()),
    "adamw-cosine": lambda: AdamW(lr=0.003, schedule=Cosine()),  # weight decay 0.01
    "sgd-wd": lambda: SGD(lr=0.1, weight_decay=0.001, schedule=Cosine()),  # the wide search's
}
VARIANTS = [(bn, direct) for bn in (True, False) for direct in (False, True)]


@pytest.fixture(scope="module")
def data():
    rng = random.Random(0)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(300)]
    vocab = Vocab.from_names(names)
    words = split_words(names, (0.8, 0.1, 0.1), 42)
    tr, dev = build_examples(words["train"], vocab, 3), build_examples(words["dev"], vocab, 3)
    return len(vocab), tr, dev


def train(engine: str, data, bn: bool, direct: bool, opt: str, batch: int = BATCH, **sizes):
    V, (X, Y), _ = data
    g = torch.Generator().manual_seed(SEED)
    model = CharMLP(ModelArgs(vocab_size=V, block_size=3, batchnorm=bn, direct=direct, **sizes), g)
    eng = engine_class(engine)(model, OPTIMIZERS[opt](), X, Y, batch, g, STEPS)
    # uneven chunks, as the trainer's history/eval boundaries make them
    losses = torch.cat([eng.run(0, 37), eng.run(37, 100), eng.run(137, STEPS - 137)])
    return losses, model


@pytest.fixture(scope="module")
def reference(data):
    """Reference results per (bn, direct, optimizer), computed once for all engines."""
    torch.set_num_threads(1)
    return {(bn, d, o): train("reference", data, bn, d, o)
            for bn, d in VARIANTS for o in OPTIMIZERS}


@pytest.mark.parametrize("engine", ["torch", "native"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("bn,direct", VARIANTS, ids=[f"bn{int(b)}-direct{int(d)}" for b, d in VARIANTS])
def test_engine_matches_reference(engine, opt, bn, direct, data, reference):
    if engine == "native" and not native_available():
        pytest.skip("no C compiler here")
    torch.set_num_threads(1)
    assert_same_training(train(engine, data, bn, direct, opt), reference[(bn, direct, opt)], data)


# Sizes off the kernels' tile grid (hidden not a multiple of the vector width, below one
# vector, rows left over) and batches below and above the vocabulary size (the native first
# layer groups a batch by token), up to the wide search's batch 128. Batch 2 goes without
# BatchNorm, whose std (no eps, as the reference) is 0 on equal rows.
ODD_SIZES = [(7, 37, 5, True, "sgd-momentum-wd"), (3, 130, 64, True, "sgd-momentum-wd"),
             (12, 9, 2, False, "sgd-momentum-wd"), (5, 3, 7, True, "adamw-cosine"),
             (11, 569, 128, True, "sgd-wd"), (10, 200, 128, False, "adamw-cosine")]


@pytest.mark.parametrize("engine", ["torch", "native"])
@pytest.mark.parametrize("emb,hidden,batch,bn,opt", ODD_SIZES)
def test_engine_matches_reference_at_odd_sizes(engine, emb, hidden, batch, bn, opt, data):
    if engine == "native" and not native_available():
        pytest.skip("no C compiler here")
    torch.set_num_threads(1)
    run = lambda name: train(name, data, bn, True, opt, batch,  # noqa: E731
                             n_embd=emb, n_hidden=hidden)
    assert_same_training(run(engine), run("reference"), data)


@pytest.mark.parametrize("bn,direct", VARIANTS, ids=[f"bn{int(b)}-direct{int(d)}" for b, d in VARIANTS])
@pytest.mark.parametrize("hidden", [200, 37, 5])
def test_native_split_loss_equals_torch_evaluation(bn, direct, hidden, data):
    """The C evaluation forward gives the torch evaluation's loss, on a trained model (so
    BatchNorm's running statistics are not the initial ones)."""
    if not native_available():
        pytest.skip("no C compiler here")
    torch.set_num_threads(1)
    _, model = train("native", data, bn, direct, "sgd-step", n_hidden=hidden)
    for X, Y in (data[1], data[2]):
        assert native.split_loss(model, X, Y) == pytest.approx(split_loss(model, X, Y), abs=1e-5)


def test_native_split_loss_falls_back_to_torch_for_float64(data):
    model = CharMLP(ModelArgs(vocab_size=data[0]), torch.Generator().manual_seed(0)).double()
    X, Y = data[2]
    assert native.split_loss(model, X, Y) == split_loss(model, X, Y)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("emb,hidden,batch,bn,opt", ODD_SIZES[:2] + ODD_SIZES[4:])
def test_native_build_of_each_vector_width_matches_reference(lanes, emb, hidden, batch, bn, opt, data):
    """Both vector widths (8 lanes as with AVX2, 16 as with AVX-512: other padding, tiles
    and horizontal sums) built and checked here, whichever the machine's own is."""
    if not native_available():
        pytest.skip("no C compiler here")
    lib = native._load((f"CHARMLP_VL={lanes}",))
    assert lib.charmlp_lanes() == lanes
    assert_lib_trains_as_reference(lib, emb, hidden, batch, bn, opt, data)


def assert_lib_trains_as_reference(lib, emb, hidden, batch, bn, opt, data):
    torch.set_num_threads(1)
    V, (X, Y), _ = data
    results = []
    for name in ("native", "reference"):
        g = torch.Generator().manual_seed(SEED)
        model = CharMLP(ModelArgs(vocab_size=V, block_size=3, batchnorm=bn, direct=True,
                                  n_embd=emb, n_hidden=hidden), g)
        eng = engine_class(name)(model, OPTIMIZERS[opt](), X, Y, batch, g, STEPS)
        if name == "native":
            eng.lib = lib
        results.append((torch.cat([eng.run(0, 37), eng.run(37, STEPS - 37)]), model))
    assert_same_training(results[0], results[1], data)


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("bn", [True, False])
def test_native_losses_turn_nan_with_the_weights_so_divergence_is_caught(lanes, bn, data):
    """tanh's and exp's clamps are min/max instructions, which drop a NaN in one operand:
    a NaN weight must still reach every loss, or the divergence check would miss it."""
    if not native_available():
        pytest.skip("no C compiler here")
    lib = native._load((f"CHARMLP_VL={lanes}",))
    V, (X, Y), _ = data
    model = CharMLP(ModelArgs(vocab_size=V, block_size=3, batchnorm=bn), torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        model.W1[0, 0] = float("nan")
    eng = engine_class("native")(model, SGD(lr=0.1), X, Y, BATCH, torch.Generator().manual_seed(SEED), 10)
    eng.lib = lib
    assert eng.run(0, 3).isnan().all()


def test_native_march_builds_for_another_cpu_and_refuses_one_this_cpu_cannot_run(tmp_path, monkeypatch, data):
    """CHARMLP_NATIVE_MARCH=haswell builds AVX2's 8-lane engine on any x86-64 CPU, AVX-512
    ones included, and it trains as the reference; a CPU type the compiler does not know, or
    one whose vector ISA this CPU lacks, is one clear refusal naming the variable."""
    if not native_available():
        pytest.skip("no C compiler here")
    if platform.machine() not in ("x86_64", "AMD64") or "avx2" not in (native_build.cpuinfo("flags") or ""):
        pytest.skip("haswell's AVX2 build needs an x86-64 CPU with AVX2")
    monkeypatch.setenv("CHARMLP_CACHE", str(tmp_path))
    monkeypatch.setenv("CHARMLP_NATIVE_MARCH", "haswell")
    lib = native._load()
    assert lib.charmlp_lanes() == 8
    assert_lib_trains_as_reference(lib, 7, 37, 5, True, "sgd-momentum-wd", data)
    monkeypatch.setenv("CHARMLP_NATIVE_MARCH", "no-such-cpu")
    with pytest.raises(native.NativeUnavailable, match="fix: unset CHARMLP_NATIVE_MARCH"):
        native._load()
    monkeypatch.setenv("CHARMLP_NATIVE_MARCH", "skylake-avx512")
    monkeypatch.setattr(native_build, "cpuinfo", lambda field: "fpu sse sse2 avx avx2 fma")
    with pytest.raises(native.NativeUnavailable, match="CHARMLP_NATIVE_MARCH=skylake-avx512 builds for avx512bw"):
        native._load()


def test_native_build_is_logged_once_then_cached(tmp_path, monkeypatch, caplog):
    """The first build says why the first trial is slow; a second process finds the cache."""
    if not native_available():
        pytest.skip("no C compiler here")
    monkeypatch.setenv("CHARMLP_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="charmlp.engines.native"):
        first = native.build(native.compiler())
        again = native.build(native.compiler())
    assert first == again and first.is_file() and tmp_path in first.parents
    msgs = [r.getMessage() for r in caplog.records if "building the native engine" in r.getMessage()]
    assert msgs == [f"building the native engine once (cached in {tmp_path / 'charmlp' / 'native'})"]


def test_an_install_builds_the_engine_that_the_first_run_then_finds(tmp_path, monkeypatch, caplog):
    """setup.py's hook calls prebuild(): what it compiles is what a trial loads, with no
    build (and no 'building' warning) in the run."""
    if not native_available():
        pytest.skip("no C compiler here")
    monkeypatch.setenv("CHARMLP_CACHE", str(tmp_path))
    monkeypatch.setenv("CHARMLP_NO_NATIVE", "1")
    assert native_build.prebuild() is None and not list(tmp_path.rglob("*.so"))  # disabled: nothing
    monkeypatch.delenv("CHARMLP_NO_NATIVE")
    built = native_build.prebuild()
    assert built is not None and built.is_file() and tmp_path in built.parents
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="charmlp.engines.native"):
        assert native.build(native.compiler()) == built
    assert not [r for r in caplog.records if "building" in r.getMessage()]


def assert_same_training(result, reference, data):
    (losses, model), (ref_losses, ref_model) = result, reference
    assert losses.shape == (STEPS,) and losses.dtype == torch.float32
    assert (losses - ref_losses).abs().max().item() < 1e-4
    ref_state = ref_model.state_dict()
    for name, value in model.state_dict().items():
        assert (value - ref_state[name]).abs().max().item() < 1e-4, name
    _, _, (Xdev, Ydev) = data
    assert split_loss(model, Xdev, Ydev) == pytest.approx(split_loss(ref_model, Xdev, Ydev), abs=1e-4)


def test_auto_picks_native_when_it_builds():
    if not native_available():
        pytest.skip("no C compiler here")
    model = CharMLP(ModelArgs(), torch.Generator().manual_seed(0))
    assert select_engine("auto", model, SGD(), torch.device("cpu")).name == "native"


def test_no_native_falls_back_to_torch_and_says_so(monkeypatch, caplog):
    monkeypatch.setenv("CHARMLP_NO_NATIVE", "1")
    native.reset_build_cache()
    monkeypatch.setattr(native, "_lib", None)
    try:
        model = CharMLP(ModelArgs(), torch.Generator().manual_seed(0))
        with caplog.at_level(logging.WARNING, logger="charmlp.engines.native"):
            cls = select_engine("auto", model, SGD(), torch.device("cpu"))
            select_engine("auto", model, SGD(), torch.device("cpu"))
        assert cls.name == "torch"
        warnings = [r for r in caplog.records if "native engine unavailable" in r.getMessage()]
        assert len(warnings) == 1 and "CHARMLP_NO_NATIVE" in warnings[0].getMessage()
        assert "torch engine is used" in warnings[0].getMessage()
        with pytest.raises(Exception, match="CHARMLP_NO_NATIVE"):
            select_engine("native", model, SGD(), torch.device("cpu"))
    finally:
        native.reset_build_cache()  # later tests may build the kernel again


def test_native_declines_cuda_and_float64():
    model = CharMLP(ModelArgs(), torch.Generator().manual_seed(0))
    assert "CPU only" in native.NativeEngine.unsupported(model, SGD(), torch.device("cuda"))
    assert "float32" in native.NativeEngine.unsupported(model.double(), SGD(), torch.device("cpu"))


def test_torch_engine_runs_in_float64_like_the_reference(data):
    """The hand-written engine is dtype-generic (the reference is too)."""
    V, (X, Y), _ = data
    results = []
    for name in ("reference", "torch"):
        g = torch.Generator().manual_seed(SEED)
        model = CharMLP(ModelArgs(vocab_size=V), g).double()
        results.append(engine_class(name)(model, SGD(schedule=Step()), X, Y, BATCH, g, 50).run(0, 50))
    # the reference stores its losses in float32; the engine keeps float64 throughout
    assert results[1].dtype == torch.float64
    assert (results[0].double() - results[1]).abs().max().item() < 1e-6
