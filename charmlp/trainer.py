"""The training loop: build from config, step through an engine, evaluate on a fixed
schedule, write metrics/history/checkpoint into the run directory."""
import csv
import io
import logging
import math
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .atomic import write_json, write_text
from .checkpoint import CHECKPOINT, save_checkpoint
from .engines import select_engine, split_loss
from .errors import CharmlpError, RunStopped, TrialDiverged, require_positive, typed
from .model import uniform_loss

log = logging.getLogger(__name__)
TRUSTED = ("charmlp.*",)  # config may only instantiate charmlp's own classes


@dataclass
class TrainerConfig:
    steps: int = 200_000
    batch_size: int = 32
    seed: int = 2147483647
    eval_interval: int = 10_000
    history_interval: int = 100
    engine: str = "auto"
    device: str = "auto"
    threads: int = 1
    max_loss: float = 20.0  # a batch loss above this (or NaN/inf) stops the run as diverged

    def __post_init__(self):
        for f in fields(self):  # trainer.steps=abc must be one line, not a traceback later
            setattr(self, f.name, typed(f"trainer.{f.name}", f.type, getattr(self, f.name)))
        if not self.max_loss > 0:
            raise CharmlpError(f"trainer.max_loss={self.max_loss} must be a positive number")
        require_positive("trainer.", steps=self.steps, batch_size=self.batch_size,
                         eval_interval=self.eval_interval, history_interval=self.history_interval,
                         threads=self.threads)


def pick_device(name: str) -> torch.device:
    """trainer.device as a torch.device this machine has, or one line saying why not (torch's
    own errors here are a 20-line assertion or a list of every device type it knows)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise CharmlpError(f"trainer.device={name!r} is unknown; use auto, cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise CharmlpError(f"trainer.device={name!r}: CUDA is not available here; "
                           "fix: trainer.device=auto or trainer.device=cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise CharmlpError(f"trainer.device={name!r}: this machine has {count} CUDA device(s), "
                           f"cuda:0 to cuda:{count - 1}; fix: trainer.device=cuda or auto")
    return device


def build(cfg: DictConfig):
    """Data, model, optimizer and trainer settings from a composed config."""
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    unknown = sorted(set(settings) - {f.name for f in fields(TrainerConfig)})
    if unknown:
        raise CharmlpError(f"trainer.{unknown[0]} is not a trainer setting; choose from "
                           f"{[f.name for f in fields(TrainerConfig)]}")
    tc = TrainerConfig(**settings)
    data = instantiate(cfg.data, _execution_whitelist_=TRUSTED)
    gen = torch.Generator().manual_seed(tc.seed)
    model = instantiate(cfg.model, _execution_whitelist_=TRUSTED)(
        vocab_size=len(data.vocab), block_size=data.block_size, generator=gen)
    optimizer = instantiate(cfg.optimizer, _execution_whitelist_=TRUSTED)
    return tc, data, model, optimizer, gen


class History:
    """Rows of step, lr, mean batch loss over the interval, and dev loss where evaluated."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, step: int, lr: float, batch_loss: float, dev_loss: float | None = None):
        self.rows.append({"step": step, "lr": lr, "batch_loss": batch_loss,
                          "dev_loss": "" if dev_loss is None else dev_loss})

    def write(self, path: Path):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["step", "lr", "batch_loss", "dev_loss"])
        w.writeheader()
        w.writerows(self.rows)
        write_text(path, buf.getvalue())


def train(cfg: DictConfig, out_dir: str | Path,
          on_eval: Callable[[int, float], None] | None = None) -> dict:
    """Train one config into out_dir and return its metrics. `on_eval(step, dev_loss)` is
    called at each evaluation, as the metric arrives (for reporting and pruning); it may
    raise RunStopped to end the run early, which is saved with its status and re-raised."""
    started_at, t0 = time.time(), time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc, data, model, optimizer, gen = build(cfg)
    torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    engine = select_engine(tc.engine, model, optimizer, device)(
        model.to(device), optimizer, data.X["train"].to(device), data.Y["train"].to(device),
        tc.batch_size, gen, tc.steps)
    V = len(data.vocab)
    metrics = {"status": "running", "engine": engine.name, "device": str(device),
               "threads": tc.threads, "num_params": model.num_params(), "vocab_size": V,
               "uniform_loss": uniform_loss(V), "steps": tc.steps, "batch_size": tc.batch_size,
               "started_at": started_at, "data_sha256": data.sha256}
    log.info("model %d params, engine %s on %s, %d steps", metrics["num_params"], engine.name,
             device, tc.steps)
    run = Run(tc, model, optimizer, engine, data.X["dev"].to(device), data.Y["dev"].to(device), on_eval)
    metrics["time_setup"] = time.perf_counter() - t0
    try:
        run.loop(metrics)
    except RunStopped as e:
        metrics.update(run.summary(), status=e.status, reason=str(e), dev_loss=run.last_dev)
        _save(out, run, model, data, metrics, cfg)
        log.info("%s at step %d: dev %.4f", e.status, run.step, run.last_dev)
        raise
    except TrialDiverged as e:
        metrics.update(run.summary(), status="diverged", reason=str(e))
        run.history.write(out / "history.csv")
        write_json(out / "metrics.json", metrics)
        raise
    t_final = time.perf_counter()
    metrics.update(run.summary(), status="completed",
                   train_loss=split_loss(model, data.X["train"].to(device), data.Y["train"].to(device)),
                   dev_loss=run.final_dev())
    if cfg.get("report_test"):
        # The test split is for final reports on a chosen config, never for selection.
        metrics["test_loss"] = split_loss(model, data.X["test"].to(device), data.Y["test"].to(device))
    metrics["time_final_eval"] = time.perf_counter() - t_final
    _save(out, run, model, data, metrics, cfg)
    log.info("train %.4f  dev %.4f  (init %.4f, ln V %.4f)  %.0f steps/s", metrics["train_loss"],
             metrics["dev_loss"], metrics["init_loss"], metrics["uniform_loss"], metrics["steps_per_sec"])
    return metrics


def _save(out: Path, run: "Run", model, data, metrics: dict, cfg: DictConfig) -> None:
    """history, checkpoint, then metrics.json last: its presence means the rest is there."""
    run.history.write(out / "history.csv")
    save_checkpoint(out / CHECKPOINT, model.cpu(), data.vocab, run.step, metrics,
                    OmegaConf.to_container(cfg, resolve=True))
    write_json(out / "metrics.json", metrics)


class Run:
    """The step loop of one training run: engine steps, evaluations on schedule, history."""

    def __init__(self, tc: TrainerConfig, model, optimizer, engine, Xdev, Ydev, on_eval):
        self.tc, self.model, self.optimizer, self.engine = tc, model, optimizer, engine
        self.Xdev, self.Ydev, self.on_eval = Xdev, Ydev, on_eval
        self.history, self.best = History(), (math.inf, -1)
        self.step, self.last_dev, self.eval_time, self.loop_time = 0, math.nan, 0.0, 0.0
        self.dev_step = -1  # the step last_dev was evaluated at

    def loop(self, metrics: dict) -> None:
        tc, t0 = self.tc, time.perf_counter()
        chunk = steps_per_call(self.engine, tc.history_interval)
        try:
            while self.step < tc.steps:
                n = min(chunk - self.step % chunk, tc.eval_interval - self.step % tc.eval_interval,
                        tc.steps - self.step)
                losses = self.engine.run(self.step, n)
                if self.step == 0:
                    metrics["init_loss"] = losses[0].item()
                for block in self._history_blocks(losses):
                    check_divergence(block, self.step, tc.max_loss)
                    self.step += len(block)
                    dev = self._evaluate(block, t0) if self._eval_due() else None
                    self.history.add(self.step, self.optimizer.lr_at(self.step - 1, tc.steps),
                                     block.mean().item(), dev)
                    if dev is not None and self.on_eval is not None:
                        self.on_eval(self.step, dev)
        finally:
            self.loop_time = time.perf_counter() - t0

    def _history_blocks(self, losses: torch.Tensor) -> list[torch.Tensor]:
        """A run's losses cut where history rows end (every history_interval steps)."""
        hi, cuts, at = self.tc.history_interval, [], self.step
        while at < self.step + len(losses):
            end = min(at + hi - at % hi, self.step + len(losses))
            cuts.append(end - at)
            at = end
        return list(torch.split(losses, cuts))

    def _eval_due(self) -> bool:
        return self.step % self.tc.eval_interval == 0 or self.step == self.tc.steps

    def _evaluate(self, losses: torch.Tensor, t0: float) -> float:
        t = time.perf_counter()
        dev = self.last_dev = split_loss(self.model, self.Xdev, self.Ydev)
        self.dev_step = self.step
        self.eval_time += time.perf_counter() - t
        self.best = min(self.best, (dev, self.step))
        log.info("step %7d/%d  loss %.4f  dev %.4f  lr %.4g  %.0f steps/s", self.step, self.tc.steps,
                 losses[-1].item(), dev, self.optimizer.lr_at(self.step - 1, self.tc.steps),
                 self.step / (time.perf_counter() - t0))
        return dev

    def final_dev(self) -> float:
        """The dev loss of the trained model: the loop's last evaluation when it ran after the
        last step (it always does at the end of a run), else a new one."""
        if self.dev_step == self.step:
            return self.last_dev
        return split_loss(self.model, self.Xdev, self.Ydev)

    def summary(self) -> dict:
        """What the loop measured, for metrics.json (wall_time is the loop, evaluations included)."""
        wall = self.loop_time
        return {"steps_done": self.step, "wall_time": wall,
                "steps_per_sec": self.step / wall if wall > 0 else None,
                "time_eval": self.eval_time,
                "best_dev_loss": self.best[0] if self.best[1] >= 0 else None,
                "best_dev_step": self.best[1] if self.best[1] >= 0 else None}


def steps_per_call(engine, history_interval: int) -> int:
    """Steps per engine.run() call (cut at evaluations): one history row's worth, or a whole
    number of rows up to the engine's run_chunk where its results do not depend on how
    steps are grouped into calls. Each call costs Python 0.1-0.3 ms (batch indices,
    learning rates, loss checks), 5-10% of a 100-step native call at small sizes."""
    return history_interval * max(1, (engine.run_chunk or 0) // history_interval)


def check_divergence(losses: torch.Tensor, step: int, max_loss: float) -> None:
    bad = ~torch.isfinite(losses) | (losses > max_loss)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise TrialDiverged(f"diverged at step {step + i}: batch loss {losses[i].item():.4g} "
                            f"(NaN/inf or above trainer.max_loss={max_loss})")
