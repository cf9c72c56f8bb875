import hashlib

import pytest
import torch

from charmlp.data import NAMES_SHA256, Vocab, build_examples, load_splits, read_names, split_words
from charmlp.errors import CharmlpError
from conftest import SHARED_NAMES, make_names


def test_split_is_the_reference_shuffle():
    import random
    names = make_names(100)
    words = list(names)
    random.seed(42)
    random.shuffle(words)
    got = split_words(names, (0.8, 0.1, 0.1), 42)
    assert got["train"] == words[:80] and got["dev"] == words[80:90] and got["test"] == words[90:]


def test_vocab_comes_from_the_data_with_boundary_first(tmp_path):
    f = tmp_path / "n.txt"
    f.write_text("\n".join(["zoë", "ann", "bob", "éva"] * 10))
    s = load_splits(str(f))
    assert s.vocab.chars[0] == "." and len(s.vocab) == 1 + len(set("zoëannbobéva"))
    assert s.X["train"].shape[1] == 3


def test_examples_follow_context_windows():
    X, Y = build_examples(["ab"], Vocab(".ab"), 3)
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]] and Y.tolist() == [1, 2, 0]


def _examples_by_the_reference_loop(words, vocab, block_size):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ix in vocab.encode(w) + [0]:
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return X, Y


@pytest.mark.parametrize("block_size", [1, 3, 7, 12])
def test_examples_equal_the_reference_loop(block_size):
    import random
    rng = random.Random(block_size)
    words = ["".join(rng.choice("abzéë") for _ in range(rng.randint(1, 15))) for _ in range(200)]
    vocab = Vocab.from_names(words)
    X, Y = build_examples(words, vocab, block_size)
    rx, ry = _examples_by_the_reference_loop(words, vocab, block_size)
    assert X.tolist() == rx and Y.tolist() == ry


def test_several_context_lengths_stay_cached(tmp_path):
    f = tmp_path / "n.txt"
    f.write_text("\n".join(make_names(50)))
    first = {b: load_splits(str(f), block_size=b) for b in (3, 5, 8)}
    assert all(load_splits(str(f), block_size=b) is s for b, s in first.items())


def test_blank_lines_and_whitespace_are_ignored(tmp_path, caplog):
    f = tmp_path / "n.txt"
    f.write_text("anna\n\n  bob \nclara\n\n")
    assert read_names(f) == ["anna", "bob", "clara"]
    assert "ignored 2 blank lines" in caplog.text


@pytest.mark.parametrize("content, message", [
    (None, "data file not found"),
    ("dir", "is a directory, not a names file"),
    (b"", "holds no names"),
    (b"anna", "too few"),
    (b"\xff\xfeanna\nbob", "not UTF-8"),
    (b"an.na\nbob", "boundary character"),
])
def test_bad_data_gets_one_clear_error(tmp_path, content, message):
    f = tmp_path / "n.txt"
    if content == "dir":
        f.mkdir()
    elif content is not None:
        f.write_bytes(content)
    with pytest.raises(CharmlpError, match=message) as e:
        load_splits(str(f))
    assert "\n" not in str(e.value) and "fix" in str(e.value)


@pytest.mark.parametrize("splits", [(0.8, 0.1, 0.2), (1.0, 0.0, 0.0)])
def test_split_fractions_must_sum_to_one(names_file, splits):
    with pytest.raises(CharmlpError, match="summing to 1"):
        load_splits(str(names_file), splits=splits)


def test_a_byte_order_mark_is_not_a_name_character(tmp_path):
    f = tmp_path / "n.txt"
    f.write_bytes(("\ufeff" + "emma\nava\n" * 5).encode("utf-8"))
    assert read_names(f) == ["emma", "ava"] * 5
    assert load_splits(str(f)).vocab.chars == ".aemv"
    f.write_bytes(b"\xef\xbb\xbfem\xffma\n")
    with pytest.raises(CharmlpError, match=r"not UTF-8 text \(byte 5\)"):  # counted from the file's start
        read_names(f)


@pytest.mark.parametrize("kwargs, message", [
    ({"splits": "abc"}, "data.splits='abc' must be three positive fractions summing to 1"),
    ({"splits": 5}, "data.splits=5 must be three"),
    ({"splits": ["a", "b", "c"]}, "data.splits[0]='a' must be a number"),
    ({"splits": [0.8, None, 0.1]}, "data.splits[1]=None must be a number"),
    ({"splits": [0.5, 0.3, 0.1, 0.1]}, "data.splits=[0.5, 0.3, 0.1, 0.1] must be three"),
    ({"splits": [0.5, 0.5]}, "data.splits=[0.5, 0.5] must be three"),
    ({"split_seed": "abc"}, "data.split_seed='abc' must be an integer"),
    ({"split_seed": 4.5}, "data.split_seed=4.5 must be an integer"),
    ({"path": 2024}, "data.path=2024 must be a file path"),
])
def test_bad_data_settings_are_one_line_naming_the_setting(names_file, kwargs, message):
    with pytest.raises(CharmlpError) as e:
        load_splits(**{"path": str(names_file), **kwargs})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_whole_number_seed_and_a_list_of_splits_give_the_reference_split(names_file):
    s = load_splits(str(names_file), splits=[0.8, 0.1, 0.1], split_seed=42.0)
    assert s.words == split_words(make_names(), (0.8, 0.1, 0.1), 42)


def test_missing_file_and_no_network_names_the_override(tmp_path, monkeypatch):
    import charmlp.data as data
    monkeypatch.setenv("CHARMLP_CACHE", str(tmp_path))
    monkeypatch.setattr(data.urllib.request, "urlretrieve",
                        lambda *a: (_ for _ in ()).throw(OSError("network unreachable")))
    with pytest.raises(CharmlpError, match="data.path="):
        data.resolve_path(None)


def test_download_is_verified_and_cached(tmp_path, monkeypatch):
    import charmlp.data as data
    monkeypatch.setenv("CHARMLP_CACHE", str(tmp_path))
    payload = b"anna\nbob\n"
    calls = []

    def fake_retrieve(url, dest):
        calls.append(url)
        open(dest, "wb").write(payload)

    monkeypatch.setattr(data.urllib.request, "urlretrieve", fake_retrieve)
    sha = hashlib.sha256(payload).hexdigest()
    p1 = data.resolve_path(None, sha=sha)
    p2 = data.resolve_path(None, sha=sha)
    assert p1 == p2 and p1.read_bytes() == payload and len(calls) == 1
    with pytest.raises(CharmlpError, match="wrong sha256"):
        (tmp_path / "charmlp" / "names.txt").unlink()
        data.resolve_path(None, sha="0" * 64)
    assert not (tmp_path / "charmlp" / "names.txt").exists()  # a bad download is never cached


@pytest.mark.skipif(not SHARED_NAMES.exists(), reason="shared names.txt not present")
def test_real_data_matches_the_reference_split():
    assert hashlib.sha256(SHARED_NAMES.read_bytes()).hexdigest() == NAMES_SHA256
    s = load_splits(str(SHARED_NAMES))
    assert len(s.vocab) == 27
    assert {k: len(v) for k, v in s.Y.items()} == {"train": 182625, "dev": 22655, "test": 22866}
    assert s.X["train"].dtype == torch.long
