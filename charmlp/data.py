"""The names dataset: find the file, validate it, split it as the reference, tensorise it."""
import codecs
import hashlib
import logging
import os
import random
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_path
from .cache import cache_dir
from .errors import CharmlpError, require_positive, typed

log = logging.getLogger(__name__)

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
BOUNDARY = "."  # start/end token, index 0, as in the reference


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_path(path: str | None, url: str = NAMES_URL, sha: str = NAMES_SHA256) -> Path:
    """An explicit path, else a verified cached copy, else a one-time verified download."""
    if path:
        if not isinstance(path, (str, os.PathLike)):  # Hydra reads data.path=2024 as a number
            raise CharmlpError(f"data.path={path!r} must be a file path; fix: e.g. data.path=./{path}")
        p = Path(path).expanduser()
        if p.is_dir():
            raise CharmlpError(f"data.path={p} is a directory, not a names file; "
                               "fix: pass data.path=/path/to/names.txt (one name per line)")
        if not p.is_file():
            raise CharmlpError(f"data file not found: {p} (fix: pass data.path=/path/to/names.txt)")
        return p
    cached = cache_dir() / "names.txt"
    if cached.is_file() and sha256(cached) == sha:
        return cached
    log.info("downloading %s to %s", url, cached)
    try:
        with atomic_path(cached) as tmp:
            urllib.request.urlretrieve(url, tmp)
            if sha256(tmp) != sha:
                raise CharmlpError(f"downloaded {url} has the wrong sha256 "
                                   "(fix: pass data.path=/path/to/names.txt)")
    except OSError as e:
        raise CharmlpError(f"no data file and the download of {url} failed ({e}); "
                           "fix: pass data.path=/path/to/names.txt") from None
    return cached


def read_names(path: Path) -> list[str]:
    """One name per line; blank lines and surrounding whitespace are dropped (and counted)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CharmlpError(f"cannot read {path}: {e.strerror}; fix: check data.path=") from None
    # A byte-order mark (some Windows editors write one) is not part of the first name.
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CharmlpError(f"{path} is not UTF-8 text (byte {e.start + len(raw) - len(body)}); "
                           "fix: re-encode it as UTF-8 or pass another data.path=") from None
    lines = text.splitlines()
    names = [w.strip() for w in lines if w.strip()]
    dropped = len(lines) - len(names)
    stripped = sum(1 for w in lines if w.strip() and w != w.strip())
    if dropped or stripped:
        log.warning("%s: ignored %d blank lines, stripped whitespace around %d names",
                    path, dropped, stripped)
    bad = sorted({c for w in names for c in w if c == BOUNDARY})
    if bad:
        raise CharmlpError(f"{path} contains the reserved boundary character '{BOUNDARY}'; "
                           "fix: remove it from the names")
    return names


@dataclass(frozen=True)
class Vocab:
    """Characters of the data, sorted, with the boundary token at index 0."""
    chars: str

    @classmethod
    def from_names(cls, names: list[str]) -> "Vocab":
        return cls(BOUNDARY + "".join(sorted(set("".join(names)))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        return [self.chars.index(c) for c in s]

    def decode(self, ix: list[int]) -> str:
        return "".join(self.chars[i] for i in ix)


@dataclass
class Splits:
    vocab: Vocab
    block_size: int
    words: dict[str, list[str]]  # split name -> names
    X: dict[str, torch.Tensor]   # split name -> (N, block_size) int64 contexts
    Y: dict[str, torch.Tensor]   # split name -> (N,) int64 next characters
    sha256: str = ""             # of the data file: reruns check they read the same data


def split_words(names: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """random.seed(seed); shuffle; cut at int(f0*n) and int((f0+f1)*n), exactly as the reference."""
    check_fractions(fractions)
    words = list(names)
    random.seed(seed)
    random.shuffle(words)
    n1, n2 = int(fractions[0] * len(words)), int((fractions[0] + fractions[1]) * len(words))
    out = {"train": words[:n1], "dev": words[n1:n2], "test": words[n2:]}
    empty = [k for k, v in out.items() if not v]
    if empty:
        raise CharmlpError(f"{len(names)} names are too few for the {'/'.join(empty)} split(s); "
                           "fix: use a larger data file or other data.splits=")
    return out


def check_fractions(fractions) -> tuple[float, float, float]:
    """data.splits as a tuple (train, dev, test) of positive numbers summing to 1, or one line."""
    must = "must be three positive fractions summing to 1; fix: e.g. data.splits=[0.8,0.1,0.1]"
    if isinstance(fractions, str) or not isinstance(fractions, Sequence):
        raise CharmlpError(f"data.splits={fractions!r} {must}")
    checked = tuple(typed(f"data.splits[{i}]", float, f) for i, f in enumerate(fractions))
    if len(checked) != 3 or any(f <= 0 for f in checked) or abs(sum(checked) - 1.0) > 1e-9:
        raise CharmlpError(f"data.splits={list(checked)} {must}")
    return checked


def build_examples(words: list[str], vocab: Vocab, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair of every word, in order: the reference's loop,
    vectorised (a sweep over context lengths builds these once per trial)."""
    index = {c: i for i, c in enumerate(vocab.chars)}
    pad = BOUNDARY * block_size
    ids = torch.tensor([index[c] for c in pad + pad.join(w + BOUNDARY for w in words)], dtype=torch.long)
    targets = torch.tensor([len(w) + 1 for w in words], dtype=torch.long)  # incl. the end token
    word_start = torch.cumsum(targets + block_size, 0) - targets - block_size
    before = torch.cumsum(targets, 0) - targets  # examples of the earlier words
    starts = (torch.repeat_interleave(word_start - before, targets)
              + torch.arange(int(targets.sum())))
    X = ids[starts[:, None] + torch.arange(block_size)]
    return X.view(-1, block_size), ids[starts + block_size]


# The data sets this process built, newest last: a sweep slot's worker process runs trial
# after trial on the same file, often at several context lengths, and building the examples
# is most of a trial's set-up. A few MB each.
_loaded: dict[tuple, Splits] = {}
_KEEP = 8


def load_splits(path: str | None, block_size: int = 3, splits=(0.8, 0.1, 0.1),
                split_seed: int = 42) -> Splits:
    require_positive("data.", block_size=block_size)
    splits = check_fractions(splits)
    split_seed = typed("data.split_seed", int, split_seed)
    file = resolve_path(path)
    stat = file.stat()
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size, block_size, splits, split_seed)
    built = _loaded.pop(key, None) or _build_splits(file, block_size, splits, split_seed)
    _loaded[key] = built  # newest last; the oldest goes first
    while len(_loaded) > _KEEP:
        del _loaded[next(iter(_loaded))]
    return built


def _build_splits(file: Path, block_size: int, splits: tuple, split_seed: int) -> Splits:
    names = read_names(file)
    if not names:
        raise CharmlpError(f"{file} holds no names; fix: pass a file with one name per line")
    words = split_words(names, splits, split_seed)
    vocab = Vocab.from_names(names)
    X, Y = {}, {}
    for k, ws in words.items():
        X[k], Y[k] = build_examples(ws, vocab, block_size)
    log.info("data %s: %d names, vocab %d, examples %s", file, len(names), len(vocab),
             {k: len(v) for k, v in Y.items()})
    return Splits(vocab, block_size, words, X, Y, sha256(file))
