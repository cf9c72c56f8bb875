"""charmlp-rerun RUN_DIR [overrides]: rerun one run's exact composed config into a new run
directory. charmlp-rerun SWEEP_DIR --best reruns a sweep's best trial."""
import argparse
import os
import sys
import time
from pathlib import Path

from .errors import CharmlpError
from .rundir import CHECKPOINT, HISTORY, METRICS, finite, read_metrics

# Files that mean a directory holds a run (finished, crashed or still running) that a rerun
# into it would overwrite.
RUN_FILES = (METRICS, CHECKPOINT, HISTORY, ".hydra/config.yaml")


def saved_config_dir(run_dir: Path) -> Path:
    cfg = run_dir / ".hydra" / "config.yaml"
    if not cfg.is_file():
        raise CharmlpError(f"{run_dir} has no saved config ({cfg} is missing); fix: pass a run "
                           "or trial directory written by charmlp-train, or a sweep dir with --best")
    return cfg.parent


def best_run_dir(sweep_dir: Path) -> Path:
    from .results import best_trial, collect
    out = Path(best_trial(collect(str(sweep_dir)))["output_dir"])
    return out if out.is_absolute() else sweep_dir / out  # relative to the sweep dir


def rerun_argv(run_dir: Path, out_dir: Path, overrides: list[str], test: bool) -> list[str]:
    # hydra.mode=RUN: a trial's saved config came from a sweep preset that may say MULTIRUN.
    argv = ["--config-dir", str(saved_config_dir(run_dir)), "--config-name", "config",
            f"hydra.run.dir={out_dir}", "hydra.mode=RUN"]
    return argv + pinned(run_dir) + (["report_test=true"] if test else []) + overrides


def pinned(run_dir: Path) -> list[str]:
    """The engine and device that actually ran (an `auto` config may pick others on this
    machine, or after an upgrade); overrides given to the rerun come later and win."""
    metrics, _ = read_metrics(run_dir)
    return [f"trainer.{key}={metrics[key]}" for key in ("engine", "device") if metrics.get(key)]


def is_override(arg: str) -> bool:
    return "=" in arg or arg.startswith("~")


def split_args(positionals: list[str]) -> tuple[str, list[str]]:
    """The path is the one argument that is not a Hydra override (key=value, ~key)."""
    paths = [arg for arg in positionals if not is_override(arg)]
    if not paths:
        raise CharmlpError("no run, trial or sweep directory given; fix: charmlp-rerun PATH [overrides]")
    if len(paths) > 1:
        raise CharmlpError(f"more than one path given ({', '.join(paths)}); fix: pass one run, trial or "
                           "sweep directory, and the other arguments as key=value overrides")
    return paths[0], [arg for arg in positionals if is_override(arg)]


def check_out(out: Path) -> None:
    """A rerun never overwrites a run: a new or empty directory only."""
    if out.exists() and not out.is_dir():
        raise CharmlpError(f"--out {out} is a file; fix: pass --out a new directory")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found:
        raise CharmlpError(f"{out} already holds a run ({', '.join(found)}); fix: pass another --out, "
                           "or remove that directory first")


def comparison(old: dict, new: dict) -> list[str]:
    """The rerun's losses beside the original's, or beside a note when the original stopped
    early: a pruned trial's dev loss after a few steps says nothing about a full run's."""
    keys = [key for key in ("train_loss", "dev_loss", "test_loss") if key in new]
    early = stopped_early(old)
    if early:
        return [f"  {key:<10} {new[key]:.6f}" for key in keys] + [f"  original {early}; not comparable"]
    lines = []
    for key in keys:
        was = f"{old[key]:.6f}" if finite(old.get(key)) is not None else "not measured"
        lines.append(f"  {key:<10} {new[key]:.6f}   (original: {was})")
    return lines


def stopped_early(metrics: dict) -> str | None:
    """'was pruned at step 100 of 2000 (dev 2.549137)' for a run that did not finish, else None."""
    status, done, steps = metrics.get("status"), metrics.get("steps_done"), metrics.get("steps")
    short = isinstance(done, int) and isinstance(steps, int) and done < steps
    if status in (None, "completed") and not short:
        return None
    where = f" at step {done} of {steps}" if isinstance(done, int) else ""
    dev = finite(metrics.get("dev_loss"))
    return f"was {status or 'stopped'}{where}" + (f" (dev {dev:.6f})" if dev is not None else "")


def data_warning(old: dict, new: dict) -> str | None:
    was, now = old.get("data_sha256"), new.get("data_sha256")
    if was and now and was != now:
        return (f"charmlp-rerun: warning: the data file differs from the original run's "
                f"(sha256 {now[:12]}... now, {was[:12]}... then): the losses are not comparable")
    return None


def original_cwd(run_dir: Path) -> str | None:
    """The directory the run was started from: relative paths in its config (data.path)
    mean what they meant then."""
    from omegaconf import OmegaConf
    try:
        cwd = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.cwd
    except Exception:  # an older or hand-made run dir: stay where we are
        return None
    return cwd if cwd and Path(cwd).is_dir() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="charmlp-rerun", description=__doc__)
    ap.add_argument("args", nargs="*", metavar="PATH [overrides]",
                    help="a run/trial directory (or a sweep directory with --best), and extra "
                         "Hydra overrides on top, e.g. trainer.steps=1000, in any order with the options")
    ap.add_argument("--best", action="store_true", help="rerun the best trial of the sweep at PATH")
    ap.add_argument("--test", action="store_true", help="also report the test split's loss")
    ap.add_argument("--out", help="new run directory (default outputs/reruns/<name>_<time>)")
    args = ap.parse_intermixed_args(argv)
    try:
        arg_path, overrides = split_args(args.args)
        path = Path(arg_path).resolve()
        if not path.is_dir():
            raise CharmlpError(f"{arg_path} is not a directory; fix: pass a run, trial or sweep directory")
        run_dir = best_run_dir(path) if args.best else path
        out = Path(args.out or f"outputs/reruns/{run_dir.name}_{time.strftime('%Y-%m-%d_%H-%M-%S')}").resolve()
        check_out(out)
        hydra_argv = rerun_argv(run_dir, out, overrides, args.test)
    except CharmlpError as e:
        print(f"charmlp-rerun: error: {e}", file=sys.stderr)
        return 2
    from . import train
    sys.argv = ["charmlp-train", *hydra_argv]
    cwd = original_cwd(run_dir)
    if cwd:
        os.chdir(cwd)
    train.main()
    (new, _), (old, _) = read_metrics(out), read_metrics(run_dir)
    print(f"rerun of {run_dir} -> {out}")
    print("\n".join(comparison(old, new)))
    warning = data_warning(old, new)
    if warning:
        print(warning, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
