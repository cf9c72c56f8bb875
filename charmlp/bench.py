"""charmlp-bench: training speed of the engines side by side, in one process, single thread.

Engines alternate in rounds (the order rotates each round), together with a tiny FMA kernel
that measures the core's peak (charmlp/engines/peak.c), so that a slow moment of the machine
hits all of them alike; the table shows per engine and config the median steps/s, the
naive-equivalent GFLOP/s (6*B*(T*E*H + H*V) per step: the multiply-adds of the plain
matmuls, forward and backward), its share of the measured peak, and the ratio to the
reference loop; all timed in the thread's CPU time, so that other processes on a shared
machine slow nothing down in the figures. Then a short run per engine shows their losses
agree, and the time of a full dev-split evaluation (torch and native) with its share of a
200k-step trial.
--profile times each phase of a native step; --parallel measures two processes training at
once against one alone; --json prints all of it as one JSON object."""
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
from .engines import ENGINES, engine_class, native, peak, select_engine
from .evaluate import split_loss
from .model import build_model
from .native_build import cpuinfo
from .optim import SGD, Step
from .trainer import TrainerConfig, steps_per_call

# name -> (context, embedding, hidden, batch): the reference, the default sweep's sizes, and
# the wide search's winners (sweeps spend their hours there).
CONFIGS = {"emb10/hid200": (3, 10, 200, 32), "emb30/hid500": (3, 30, 500, 32),
           "ctx6/emb40/hid569": (6, 40, 569, 32), "ctx8/emb40/hid800": (8, 40, 800, 32),
           "ctx8/emb40/hid800/b128": (8, 40, 800, 128)}
PEAK = "fma peak"  # the calibration kernel's name among the engines of a round
TARGET_PEAK = ("emb30/hid500", "ctx6/emb40/hid569", "ctx8/emb40/hid800")  # native >= 60%
TARGET_RATIO = ("emb10/hid200", 25.0)  # native >= 25x the reference
TRIAL_STEPS, EVAL_INTERVAL = 200_000, 10_000  # a default trial, for evaluation's share
SEED = 2147483647


def machine() -> str:
    """CPU model, cores and torch version, for the header of the bench's output."""
    model = cpuinfo("model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def default_data() -> str | None:
    shared = Path.cwd().parent / "shared" / "data" / "names.txt"
    return str(shared) if shared.is_file() else None  # None: charmlp's resolve_path decides


def vector_isa() -> str:
    """The vector width the native engine was built for, in words."""
    try:
        lanes = native.library().charmlp_lanes()
    except native.NativeUnavailable:
        return "no native build"
    return {16: "AVX-512 (16 lanes)", 8: "AVX2-width vectors (8 lanes)"}.get(lanes, f"{lanes} lanes")


def naive_flops(shape: tuple[int, int, int, int], vocab: int) -> int:
    """Multiply-add flops of a step's plain matmuls, forward and backward: 6*B*(T*E*H + H*V)."""
    T, E, H, B = shape
    return 6 * B * (T * E * H + H * vocab)


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


def timed_steps(engine, start: int, steps: int) -> float:
    """steps/s over `steps` steps, in run() calls as the trainer makes them (at its default
    history_interval), in this thread's CPU time (as the peak kernel's): on a shared
    machine, time the core spent on other processes counts against neither, and long runs
    and short bursts are measured alike."""
    chunk = steps_per_call(engine, TrainerConfig.history_interval)
    t0 = time.thread_time()
    for s in range(start, start + steps, chunk):
        engine.run(s, min(chunk, start + steps - s))
    return steps / (time.thread_time() - t0)


class Datasets(dict):
    """load_splits per context length, loaded once."""
    def __init__(self, path: str | None):
        super().__init__()
        self.path = path

    def __missing__(self, block_size: int):
        self[block_size] = load_splits(self.path, block_size=block_size)
        return self[block_size]


def round_steps(shape: tuple[int, int, int, int], steps: int) -> int:
    """Steps per engine per round: `steps` at the reference size, fewer (by flops, >= 200)
    at larger ones, so that every config takes about as long."""
    base = naive_flops(CONFIGS["emb10/hid200"], 27)
    return max(200, int(round(steps * base / naive_flops(shape, 27), -2)))


def speed_rows(datasets, configs: dict, names: list[str], rounds: int,
               steps: int) -> tuple[float, list[dict]]:
    """(median peak GFLOP/s, one row per engine and config). Each round runs every engine
    and the peak kernel, in an order that rotates."""
    rows, peaks = [], []
    for cfg, (T, E, H, B) in configs.items():
        data, n = datasets[T], round_steps((T, E, H, B), steps)
        engines = {name: make_engine(name, data, E, H, 10 * (rounds + 1) * n, B) for name in names}
        for e in engines.values():
            e.run(0, 50)  # warm-up: allocation, first-call costs
        rates = {name: [] for name in names}
        order = names + [PEAK]
        for r in range(rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                if name == PEAK:
                    peaks.append(peak.gflops(repeats=1))
                else:
                    rates[name].append(timed_steps(engines[name], 50 + r * n, n))
        ref = statistics.median(rates["reference"]) if "reference" in rates else None
        flops = naive_flops((T, E, H, B), len(data.vocab))
        for name in names:
            med = statistics.median(rates[name])
            rows.append({"engine": name, "config": cfg, "context": T, "emb": E, "hidden": H,
                         "batch": B, "steps_per_sec": med, "gflops": med * flops / 1e9,
                         "x_ref": med / ref if ref else None})
    top = statistics.median(peaks)
    for row in rows:
        row["pct_peak"] = 100 * row["gflops"] / top
    return top, rows


def agreement_rows(data, names: list[str], steps: int) -> list[dict]:
    """The same `steps` steps per engine at emb10/hid200: batch losses (their largest gap to
    the reference's), and train/dev loss after."""
    rows, ref = [], None
    for n in (["reference"] if "reference" in names else []) + [n for n in names if n != "reference"]:
        e = make_engine(n, data, 10, 200, steps)
        t0 = time.thread_time()
        losses = torch.cat([e.run(s, min(100, steps - s)) for s in range(0, steps, 100)])
        cpu = time.thread_time() - t0
        ref = losses if n == "reference" else ref
        m = e.model
        rows.append({"engine": n, "last100": losses[-100:].mean().item(),
                     "max_gap": None if ref is None else (losses - ref).abs().max().item(),
                     "train": split_loss(m, data.X["train"], data.Y["train"]),
                     "dev": split_loss(m, data.X["dev"], data.Y["dev"]), "steps_per_sec": steps / cpu})
    return rows


def eval_rows(datasets, configs: dict, speeds: list[dict], rounds: int) -> list[dict]:
    """Per config, one full dev-split evaluation by torch and by the native forward (median
    of `rounds`), and evaluation's share of a default trial trained by native: 20 dev
    evaluations on the way, then train and dev at the end."""
    rows = []
    rate = {r["config"]: r["steps_per_sec"] for r in speeds if r["engine"] == "native"}
    for cfg, (T, E, H, B) in configs.items():
        if cfg not in rate or B != 32:
            continue
        data = datasets[T]
        model = make_engine("native", data, E, H, 100, B).model
        Xd, Yd = data.X["dev"], data.Y["dev"]
        train_over_dev = data.X["train"].shape[0] / Xd.shape[0]
        row = {"config": cfg, "dev_examples": Xd.shape[0]}
        for path, fn in (("torch", split_loss), ("native", native.split_loss)):
            times = []
            for _ in range(rounds):
                t0 = time.thread_time()
                fn(model, Xd, Yd)
                times.append(time.thread_time() - t0)
            one = statistics.median(times)
            evals = one * (TRIAL_STEPS // EVAL_INTERVAL + 1 + train_over_dev)
            row[f"{path}_dev_s"] = one
            row[f"{path}_share"] = evals / (evals + TRIAL_STEPS / rate[cfg])
        rows.append(row)
    return rows


def profile_rows(datasets, configs: dict, steps: int) -> list[dict]:
    """Seconds per native step in each phase (the -DCHARMLP_PROFILE build), per config."""
    rows = []
    for cfg, (T, E, H, B) in configs.items():
        e = make_engine("native", datasets[T], E, H, steps + 100, B)
        e.lib = native.profile_library()
        e.run(0, 100)
        native.phase_seconds(e.lib)  # drop the warm-up
        for s in range(100, steps + 100, 100):
            e.run(s, 100)
        rows.append({"config": cfg, "us_per_step": {k: 1e6 * v / steps
                                                     for k, v in native.phase_seconds(e.lib).items()}})
    return rows


def targets(speeds: list[dict], agreement: list[dict]) -> dict[str, bool]:
    """The engine's targets, checked on this run's own numbers."""
    nat = {r["config"]: r for r in speeds if r["engine"] == "native"}
    out = {f"native >= 60% of peak at {c}": nat[c]["pct_peak"] >= 60 for c in TARGET_PEAK if c in nat}
    cfg, ratio = TARGET_RATIO
    if cfg in nat and nat[cfg]["x_ref"] is not None:
        out[f"native >= {ratio:.0f}x the reference at {cfg}"] = nat[cfg]["x_ref"] >= ratio
    gaps = [r["max_gap"] for r in agreement if r["max_gap"] is not None]
    if len(gaps) > 1:
        out["batch losses equal the reference's within 1e-4"] = max(gaps) <= 1e-4
    return out


def print_report(report: dict) -> None:
    print(f"machine: {report['machine']}; native vectors: {report['isa']}")
    print(f"data {report['data']}, 1 thread, timed in its CPU time, {report['rounds']} rounds per "
          f"config (steps per round scaled by size); auto picks: {report['auto']}")
    print(f"measured FMA peak: {report['peak_gflops']:.1f} GFLOP/s (median of the rounds)")
    print(f"\n{'engine':<16}{'config':<24}{'steps/s':>9}{'GFLOP/s':>9}{'% peak':>8}{'x ref':>7}")
    for r in report["speed"]:
        name = r["engine"] + (" (auto)" if r["engine"] == report["auto"] else "")
        x_ref = f"{r['x_ref']:.1f}" if r["x_ref"] is not None else "-"
        print(f"{name:<16}{r['config']:<24}{r['steps_per_sec']:>9.0f}{r['gflops']:>9.1f}"
              f"{r['pct_peak']:>7.0f}%{x_ref:>7}")
    print(f"\nagreement: {report['agreement_steps']} steps, emb10/hid200, same seed")
    print(f"{'engine':<11}{'last-100 batch':>15}{'max gap':>10}{'train':>9}{'dev':>9}{'steps/s':>9}")
    for r in report["agreement"]:
        gap = f"{r['max_gap']:.1e}" if r["max_gap"] is not None else "-"
        print(f"{r['engine']:<11}{r['last100']:>15.4f}{gap:>10}{r['train']:>9.4f}{r['dev']:>9.4f}"
              f"{r['steps_per_sec']:>9.0f}")
    if report["evaluation"]:
        print(f"\nevaluation: one full dev split ({report['evaluation'][0]['dev_examples']} examples), "
              f"and all evaluations' share of a {TRIAL_STEPS}-step native trial")
        print(f"{'config':<24}{'torch s':>9}{'share':>7}{'native s':>10}{'share':>7}")
        for r in report["evaluation"]:
            print(f"{r['config']:<24}{r['torch_dev_s']:>9.3f}{r['torch_share']:>7.1%}"
                  f"{r['native_dev_s']:>10.3f}{r['native_share']:>7.1%}")
    for r in report.get("profile", []):
        total = sum(r["us_per_step"].values())
        print(f"\nprofile {r['config']}: {total:.1f} us per step")
        for k, us in r["us_per_step"].items():
            print(f"  {k:<24}{us:>8.1f} us {us / total:>6.1%}")
    if report["targets"]:
        print()
    for k, ok in report["targets"].items():
        print(f"target: {k}: {'yes' if ok else 'NO'}")


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
    p.add_argument("--steps", type=int, default=500,
                   help="steps per engine per round at emb10/hid200 (fewer at larger sizes)")
    p.add_argument("--final-steps", type=int, default=2000, help="steps of the agreement run")
    p.add_argument("--data", default=default_data(), help="names.txt (default: ../shared/data/names.txt if present)")
    p.add_argument("--engines", default=None, help="comma list (default: all that load here)")
    p.add_argument("--configs", default=None, help=f"comma list of {', '.join(CONFIGS)} (default: all)")
    p.add_argument("--profile", action="store_true", help="also time each phase of a native step")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--parallel", action="store_true", help="2 processes at once vs 1 alone")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    chosen = args.configs.split(",") if args.configs else list(CONFIGS)
    unknown = [c for c in chosen if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"charmlp-bench: unknown config {', '.join(unknown)}; "
                         f"fix: --configs from {', '.join(CONFIGS)}")
    configs = {c: CONFIGS[c] for c in chosen}
    torch.set_num_threads(1)
    datasets = Datasets(args.data)
    data = datasets[3]
    names = args.engines.split(",") if args.engines else available_engines(data)
    model = build_model(len(data.vocab), data.block_size)
    auto = select_engine("auto", model, SGD(), torch.device("cpu")).name
    if args.parallel:
        return parallel(args, auto)
    try:
        peak.library()
    except native.NativeUnavailable as e:
        raise SystemExit(f"charmlp-bench: cannot build the FMA peak kernel ({e}); "
                         "fix: install a C compiler (cc/gcc) or set $CC") from None
    top, speeds = speed_rows(datasets, configs, names, args.rounds, args.steps)
    agreement = agreement_rows(data, names, args.final_steps)
    report = {"machine": machine(), "isa": vector_isa(), "data": args.data or "default",
              "rounds": args.rounds, "auto": auto, "peak_gflops": top, "speed": speeds,
              "agreement_steps": args.final_steps, "agreement": agreement,
              "evaluation": eval_rows(datasets, configs, speeds, args.rounds) if "native" in names else [],
              "targets": targets(speeds, agreement) if "native" in names else {}}
    if args.profile and "native" in names:
        report["profile"] = profile_rows(datasets, configs, 10 * args.steps)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
