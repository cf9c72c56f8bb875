"""charmlp-bench: training speed of the engines side by side, in one process, single thread.

Engines alternate in rounds (the order rotates each round) so that a slow moment of the
machine hits all of them alike; the table shows the median steps/s per engine and config and
the ratio to the reference loop. Then a short run per engine shows their losses agree.
--parallel instead measures two processes training at once against one alone."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .data import load_splits
from .engines import ENGINES, engine_class, native, select_engine
from .evaluate import split_loss
from .model import build_model
from .optim import SGD, Step

CONFIGS = {"emb10/hid200": (10, 200), "emb30/hid500": (30, 500)}
SEED = 2147483647


def machine() -> str:
    """CPU model, cores and torch version, for the header of the bench's output."""
    model = native.cpuinfo("model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def default_data() -> str | None:
    shared = Path.cwd().parent / "shared" / "data" / "names.txt"
    return str(shared) if shared.is_file() else None  # None: charmlp's resolve_path decides


def make_engine(name: str, data, emb: int, hidden: int, total_steps: int, batch: int = 32):
    g = torch.Generator().manual_seed(SEED)
    model = build_model(len(data.vocab), data.block_size, g, n_embd=emb, n_hidden=hidden)
    opt = SGD(lr=0.1, schedule=Step())
    return engine_class(name)(model, opt, data.X["train"], data.Y["train"], batch, g, total_steps)


def available_engines(data) -> list[str]:
    """Engines that load and support the reference config here (native may not build)."""
    names = []
    for name in ENGINES:
        try:
            cls = engine_class(name)
        except (ImportError, OSError, RuntimeError):
            continue
        model = build_model(len(data.vocab), data.block_size, n_embd=10, n_hidden=200)
        if cls.unsupported(model, SGD(), torch.device("cpu")) is None:
            names.append(name)
    return names


def timed_steps(engine, start: int, steps: int, chunk: int = 100) -> float:
    """steps/s over `steps` steps, in the trainer's chunks of 100."""
    t0 = time.perf_counter()
    for s in range(start, start + steps, chunk):
        engine.run(s, min(chunk, start + steps - s))
    return steps / (time.perf_counter() - t0)


def speed_table(data, names: list[str], rounds: int, steps: int) -> list[tuple]:
    rows = []
    for cfg, (emb, hidden) in CONFIGS.items():
        total = 10 * (rounds + 1) * steps
        engines = {n: make_engine(n, data, emb, hidden, total) for n in names}
        for e in engines.values():
            e.run(0, 50)  # warm-up: allocation, first-call costs
        rates = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                rates[n].append(timed_steps(engines[n], 50 + r * steps, steps))
        ref = statistics.median(rates["reference"]) if "reference" in rates else None
        for n in names:
            med = statistics.median(rates[n])
            rows.append((n, cfg, med, med / ref if ref else float("nan")))
    return rows


def agreement_table(data, names: list[str], steps: int) -> list[tuple]:
    rows = []
    for n in names:
        e = make_engine(n, data, 10, 200, steps)
        t0 = time.perf_counter()
        losses = torch.cat([e.run(s, min(100, steps - s)) for s in range(0, steps, 100)])
        wall = time.perf_counter() - t0
        m = e.model
        rows.append((n, losses[-100:].mean().item(), split_loss(m, data.X["train"], data.Y["train"]),
                     split_loss(m, data.X["dev"], data.Y["dev"]), steps / wall))
    return rows


def worker(args) -> None:
    """One process of --parallel: train `steps` steps single-threaded, print steps/s as JSON."""
    torch.set_num_threads(1)
    data = load_splits(args.data)
    e = make_engine(args.worker, data, 10, 200, args.steps + 100)
    e.run(0, 100)
    print(json.dumps({"steps_per_sec": timed_steps(e, 100, args.steps)}))


def spawn(engine: str, steps: int, data: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "charmlp.bench", "--worker", engine, "--steps", str(steps)]
    if data:
        cmd += ["--data", data]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def collect(procs: list[subprocess.Popen]) -> list[float]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"bench worker failed with exit code {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1])["steps_per_sec"])
    return out


def parallel(args, engine: str) -> None:
    alone = collect([spawn(engine, args.steps, args.data)])[0]
    both = collect([spawn(engine, args.steps, args.data) for _ in range(2)])
    print(f"engine {engine}, emb10/hid200, {args.steps} steps per process, 1 thread each")
    print(f"{'run':<22}{'steps/s':>10}{'of alone':>10}")
    print(f"{'alone':<22}{alone:>10.0f}{1.0:>10.0%}")
    for i, r in enumerate(both):
        print(f"{f'2 at once, process {i + 1}':<22}{r:>10.0f}{r / alone:>10.0%}")
    ok = all(r / alone >= 0.8 for r in both)
    print(f"each >= 80% of alone: {'yes' if ok else 'NO'}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="charmlp-bench", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median taken)")
    p.add_argument("--steps", type=int, default=500, help="steps per engine per round")
    p.add_argument("--final-steps", type=int, default=2000, help="steps of the agreement run")
    p.add_argument("--data", default=default_data(), help="names.txt (default: ../shared/data/names.txt if present)")
    p.add_argument("--engines", default=None, help="comma list (default: all that load here)")
    p.add_argument("--parallel", action="store_true", help="2 processes at once vs 1 alone")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    torch.set_num_threads(1)
    data = load_splits(args.data)
    names = args.engines.split(",") if args.engines else available_engines(data)
    model = build_model(len(data.vocab), data.block_size)
    auto = select_engine("auto", model, SGD(), torch.device("cpu")).name
    if args.parallel:
        return parallel(args, auto)
    print(f"machine: {machine()}")
    print(f"data {args.data or 'default'}, batch 32, 1 thread, {args.rounds} rounds x {args.steps} "
          f"steps per engine; auto picks: {auto}")
    print(f"\n{'engine':<16}{'config':<14}{'steps/s':>10}{'x ref':>8}")
    for n, cfg, rate, ratio in speed_table(data, names, args.rounds, args.steps):
        print(f"{n + (' (auto)' if n == auto else ''):<16}{cfg:<14}{rate:>10.0f}{ratio:>8.1f}")
    print(f"\nagreement: {args.final_steps} steps, emb10/hid200, same seed")
    print(f"{'engine':<11}{'last-100 batch':>15}{'train':>9}{'dev':>9}{'steps/s':>9}")
    for n, batch, tr, dev, rate in agreement_table(data, names, args.final_steps):
        print(f"{n:<11}{batch:>15.4f}{tr:>9.4f}{dev:>9.4f}{rate:>9.0f}")


if __name__ == "__main__":
    main()
