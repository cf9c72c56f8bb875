"""charmlp-sample RUN_DIR -n 20: names from a trained run, each marked new or in train/dev."""
import argparse
import sys

import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .data import load_splits
from .errors import CharmlpError
from .model import fold_batchnorm


@torch.no_grad()
def generate(model, n: int, generator: torch.Generator, max_len: int = 50) -> list[list[int]]:
    """n sequences of token ids, each ended by the boundary token (0) or max_len."""
    model = fold_batchnorm(model).eval()
    T = model.args.block_size
    out = []
    for _ in range(n):
        context, ids = [0] * T, []
        while len(ids) < max_len:
            logits, _ = model(torch.tensor([context]))
            ix = torch.multinomial(F.softmax(logits, dim=1), 1, generator=generator).item()
            if ix == 0:
                break
            ids.append(ix)
            context = context[1:] + [ix]
        out.append(ids)
    return out


def label(name: str, words: dict[str, list[str]]) -> str:
    for split in ("train", "dev"):
        if name in words[split]:
            return f"in {split}"
    return "new"


def escape_unprintable(stream) -> None:
    """Names the output encoding cannot represent (an accented name under an ASCII locale)
    print as backslash escapes instead of ending the run with UnicodeEncodeError."""
    if hasattr(stream, "reconfigure"):  # a TextIOWrapper; replaced streams may not be
        stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="charmlp-sample", description=__doc__)
    ap.add_argument("run_dir", help="a run directory holding model.pt")
    ap.add_argument("-n", "--num", type=int, default=20, help="how many names (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.num < 1:
            raise CharmlpError(f"-n {args.num} must be at least 1; fix: pass -n 1 or more")
        model, vocab, ckpt = load_checkpoint(args.run_dir)
        d = ckpt["config"]["data"]
        words = load_splits(d["path"], d["block_size"], d["splits"], d["split_seed"]).words
    except CharmlpError as e:
        print(f"charmlp-sample: error: {e}", file=sys.stderr)
        return 2
    words = {k: set(v) for k, v in words.items()}
    escape_unprintable(sys.stdout)
    for ids in generate(model, args.num, torch.Generator().manual_seed(args.seed)):
        name = vocab.decode(ids)
        print(f"{name:<20} {label(name, words)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
