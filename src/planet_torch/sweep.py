"""``planet sweep``: tasks × seeds × variants, each trial a Ray task in its own run folder.

Layout of a sweep folder::

    <sweep>/sweep.json              what was asked (tasks, seeds, variants, base config)
    <sweep>/trials/<trial>/         an ordinary run folder (planet eval/plot/inspect work on it)
    <sweep>/trials/<trial>.json     the trial's outcome: done/failed, attempts, scores, error
    <sweep>/logs/<trial>.log        everything the trial printed
    <sweep>/summary.md|json|png     the table of all trials and their learning curves
    <sweep>/ray/                    the local Ray cluster's session files and auth token

A trial whose ``<trial>.json`` says done (with the same config) is skipped when the sweep runs
again; an unfinished one resumes from its last checkpoint (``planet train --resume``). A trial
that raises is retried (``--retries``, resuming) and then reported; the others go on.

Ray: a local cluster is started by default (``address=None``) with its files, socket paths and
token inside the sweep folder and usage stats off; ``--address`` joins an existing cluster
(``auto``, ``host:6379`` or ``ray://host:10001``) -- see the README for what its nodes need.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planet_torch.config import Config, override, task_slug, task_spec
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text

# The paper's ablations (Figure 6/7 of Hafner et al. 2019) as config changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "planet": {},  # the RSSM: PlaNet itself (Config.variant names each the same)
    "ssm": {"model": {"kind": "ssm"}},
    "deterministic": {"model": {"mean_only": True}, "loss": {"kl_scale": 0.0}},
    "random": {"planner": {"iterations": 0, "train_noise": 1.0}},  # original: README
    "dreamer": {"algo": "dreamer"},  # the same world model, a latent actor-critic for CEM
    "ddpg": {"algo": "ddpg"},  # the model-free baseline (ddpg.obs: from states or pixels)
}


@dataclass(frozen=True)
class Trial:
    name: str
    task: str
    variant: str
    seed: int
    config: Config


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` and ``"0-2,9"`` work too."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                first, last = part.split("-", 1)
                seeds.extend(range(int(first), int(last) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserError(f"--seeds {text!r}: use a range like 0-4 or a list like 0,1,5") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: give distinct seeds >= 0, e.g. 0-4")
    return seeds


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--{what} {text!r}: give a comma-separated list without repeats")
    return names


def task_names(text: str) -> list[str]:
    """``"a,b"`` -> ["a", "b"], each a known task (else a UserError listing them)."""
    names = _names(text, "tasks")
    for task in names:
        task_spec(task)
    return names


def plan_trials(base: Config, tasks: str, seeds: str, variants: str) -> list[Trial]:
    """Every (task, variant, seed) as a validated config, in a stable order."""
    variant_names = _names(variants, "variants")
    unknown = [v for v in variant_names if v not in VARIANTS]
    if unknown:
        raise UserError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    trials = []
    for task in task_names(tasks):
        for variant in variant_names:
            for seed in parse_seeds(seeds):
                cfg = override(base, task=task, seed=seed, **VARIANTS[variant]).validate()
                _check_variant(cfg, variant, base)
                name = f"{task_slug(task)}-{variant}-seed{seed}"
                trials.append(Trial(name, task, cfg.variant, seed, cfg))  # ddpg: ddpg-state
    return trials


def _check_variant(cfg: Config, variant: str, base: Config) -> None:
    """A trial runs the variant its name says: config flags that make another one of it (``--algo
    ddpg`` with ``--variants planet,ssm``: two DDPG runs named planet and ssm) are refused."""
    runs = cfg.variant
    if runs == variant or (variant == "ddpg" and runs.startswith("ddpg-")):
        return
    flags = [
        flag
        for flag, given in [
            (f"--algo {base.algo}", base.algo != "planet"),
            ("--model.kind ssm", base.model.kind == "ssm"),
            ("--model.mean-only True", base.model.mean_only),
            ("--planner.iterations 0", base.planner.iterations == 0),
        ]
        if given
    ]
    raise UserError(
        f"--variants {variant}: with {' '.join(flags) or 'the flags given'} its trials would run "
        f"the {runs.split('-')[0]} variant; drop the flag (--variants chooses the algorithm and "
        "ablation of each trial)"
    )


# ---------------------------------------------------------------------------------------------
# One trial (runs inside a Ray worker process)
# ---------------------------------------------------------------------------------------------


def run_trial(config: dict[str, Any], run_dir: str, log_path: str, threads: int) -> dict[str, Any]:
    """Train one run (resuming it if its folder holds one); returns the trainer's summary.
    Everything the trial prints goes to ``log_path``."""
    import torch

    from planet_torch.training.runs import train_and_score

    torch.set_num_threads(max(1, threads))
    cfg = Config.from_dict(config)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log_path, "a", buffering=1) as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}", flush=True)
        resume = (Path(run_dir) / "config.json").exists()
        summary = train_and_score(cfg, Path(run_dir), resume=resume, progress=False)
        print(f"summary: {json.dumps(summary)}", flush=True)
    return summary


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------

_SOCKET_ROOM = 60  # chars Ray appends to its temp dir for socket paths (AF_UNIX limit 107)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_process_token: str | None = None


def _token_file(ray_dir: Path) -> Path:
    """The local cluster's auth token, in the sweep folder (mode 0600). Ray loads the token once
    per process, so a second sweep in the same process reuses the first one's secret."""
    global _process_token
    path = ray_dir / "auth_token"
    current = path.read_text().strip() if path.exists() else None
    if _process_token is None:
        _process_token = current or secrets.token_hex(32)
    if current != _process_token:
        atomic_write_text(path, _process_token)
    path.chmod(0o600)
    return path


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) that answers no TCP connection is a user error
    at once: ray.init would retry it with a warning every few seconds for minutes."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        why = error.strerror or type(error).__name__
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({why}); start its head there "
            "(ray start --head) or check --address (auto on the head node)"
        ) from None


@contextlib.contextmanager
def ray_session(sweep_dir: Path, address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """``ray`` initialised: a local cluster kept inside ``sweep_dir/ray`` (address None) or a
    connection to an existing one; shut down on exit."""
    ray_dir = (sweep_dir / "ray").resolve()
    ray_dir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {"RAY_USAGE_STATS_ENABLED": "0"}
    link: Path | None = None
    kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if address is None:
        # Ray >= 2.59 turns token auth on and writes the token to ~/.ray: keep it here instead.
        token = _token_file(ray_dir)
        if "RAY_AUTH_MODE" not in os.environ:
            env["RAY_AUTH_MODE"] = "token"
        if "RAY_AUTH_TOKEN_PATH" not in os.environ:
            env["RAY_AUTH_TOKEN_PATH"] = str(token)
        temp_dir = ray_dir
        if len(str(ray_dir)) > 107 - _SOCKET_ROOM:
            # Socket paths under a deep folder exceed AF_UNIX's 107 bytes: reach the same folder
            # through a short symlink in /tmp (the files still live in the sweep folder).
            digest = hashlib.sha1(str(ray_dir).encode()).hexdigest()[:10]
            link = Path("/tmp") / f"planet-ray-{digest}"
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(ray_dir, target_is_directory=True)
            temp_dir = link
        kwargs.update(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=100 * 1024**2,  # trials exchange only small summaries
            _temp_dir=str(temp_dir),
        )
    else:
        kwargs["address"] = address  # reachable: Sweep checked it before writing anything
    try:
        with _environ(**env):
            try:
                import ray  # after the environment is set: Ray reads its auth settings on import
            except ImportError:
                raise UserError("planet sweep needs Ray: pip install 'ray==2.60.0'") from None
            try:
                ray.init(**kwargs)
            except Exception as error:  # Ray raises plain Exception on a start-up timeout
                where = address or "a local Ray cluster"
                first = " ".join(str(error).split())[:200]
                raise UserError(f"could not start or reach {where}: {first}") from None
            try:
                yield ray
            finally:
                ray.shutdown()
    finally:
        if link is not None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepOptions:
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    retries: int = 1
    num_cpus: int | None = None


class Sweep:
    def __init__(self, sweep_dir: Path, trials: Sequence[Trial], options: SweepOptions) -> None:
        if options.retries < 0 or options.cpus_per_trial <= 0 or options.gpus_per_trial < 0:
            raise UserError("--retries must be >= 0, --cpus-per-trial > 0, --gpus-per-trial >= 0")
        if options.num_cpus is not None and options.num_cpus < 1:
            raise UserError(
                f"--num-cpus must be >= 1 (got {options.num_cpus}); leave it out for all"
            )
        if options.address is not None:  # before the sweep folder exists: a typo writes nothing
            _check_reachable(options.address)
        self.dir = sweep_dir
        self.trials = list(trials)
        self.options = options
        self.outcomes: dict[str, dict[str, Any]] = {}

    def run_dir(self, trial: Trial) -> Path:
        return self.dir / "trials" / trial.name

    def outcome_path(self, trial: Trial) -> Path:
        return self.dir / "trials" / f"{trial.name}.json"

    def log_path(self, trial: Trial) -> Path:
        return self.dir / "logs" / f"{trial.name}.log"

    def _finished_before(self, trial: Trial) -> dict[str, Any] | None:
        path = self.outcome_path(trial)
        if not path.exists():
            return None
        try:
            outcome: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if outcome.get("status") == "done" and _same_config(outcome.get("config"), trial.config):
            return outcome
        return None

    def check_tasks(self) -> list[str]:
        """Build each task's env once and close it, as its trials would (a misspelt
        ``dmc:``/``gym:`` name, discrete actions): before any trial starts, not in its log."""
        from planet_torch.training.runs import checked_action_size

        tasks: dict[str, Config] = {}
        for trial in self.trials:
            tasks.setdefault(trial.task, trial.config)
        for cfg in tasks.values():
            checked_action_size(cfg)
        return list(tasks)

    def describe(self) -> str:
        """``planet sweep --dry-run``: each trial's plan (updates, train env steps) and what a
        run of the sweep would do with it (run, resume its checkpoint, or skip it, finished);
        every task's env built once, as its trials would; nothing trained or written."""
        from planet_torch.training.run_dir import RunDir
        from planet_torch.training.runs import train_env_steps, trainer_class

        checked = self.check_tasks()
        lines = [
            f"plan of sweep {self.dir}: {len(self.trials)} trials; nothing trained or written:"
        ]
        todo_updates = 0
        for trial in self.trials:
            cfg = trial.config.validate()
            plan = trainer_class(cfg).plan(cfg)
            updates = plan.updates
            if self._finished_before(trial) is not None:
                status = "finished: skipped"
            else:
                resumes = RunDir(self.run_dir(trial)).exists()
                status = "resumes from its checkpoint" if resumes else "runs"
                todo_updates += updates
            lines.append(
                f"  {trial.name}: {updates:,} updates, {train_env_steps(cfg, plan):,} train env steps"
                f" -- {status}"
            )
        lines.append(
            f"  envs built and checked: {', '.join(checked)}; {todo_updates:,} updates "
            "to run in all (a trial's time: the cost line in its log)"
        )
        return "\n".join(lines)

    def _record(self, trial: Trial, status: str, attempts: int, **extra: Any) -> None:
        outcome = {
            "trial": trial.name,
            "task": trial.task,
            "variant": trial.variant,
            "seed": trial.seed,
            "status": status,
            "attempts": attempts,
            "run_dir": str(self.run_dir(trial)),
            "log": str(self.log_path(trial)),
            **extra,
            "config": trial.config.to_dict(),
        }
        self.outcomes[trial.name] = outcome
        atomic_write_text(self.outcome_path(trial), json.dumps(outcome, indent=2) + "\n")

    def run(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "trials").mkdir(exist_ok=True)
        todo = []
        for trial in self.trials:
            before = self._finished_before(trial)
            if before is None:
                todo.append(trial)
            else:
                self.outcomes[trial.name] = before
                print(f"skip  {trial.name}: finished in an earlier run of this sweep")
        if todo:
            self._run_on_ray(todo)
        return self.write_summary()

    def _run_on_ray(self, todo: list[Trial]) -> None:
        o = self.options
        with ray_session(self.dir, o.address, o.num_cpus) as ray:
            remote = ray.remote(
                num_cpus=o.cpus_per_trial,
                num_gpus=o.gpus_per_trial,
                max_calls=1,  # a fresh worker process per trial: no state carried between trials
                max_retries=0,  # retries are ours: they resume from the trial's checkpoint
            )(run_trial)
            threads = max(1, int(o.cpus_per_trial))
            pending: dict[Any, tuple[Trial, int]] = {}

            def submit(trial: Trial, attempt: int) -> None:
                ref = remote.remote(
                    trial.config.to_dict(),
                    str(self.run_dir(trial).resolve()),
                    str(self.log_path(trial).resolve()),
                    threads,
                )
                pending[ref] = (trial, attempt)
                print(f"start {trial.name} (attempt {attempt})", flush=True)

            for trial in todo:
                submit(trial, 1)
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                trial, attempt = pending.pop(ref)
                try:
                    summary = ray.get(ref)
                except Exception as error:  # the trial raised, or its worker died
                    message = _one_line_error(error)
                    if attempt <= o.retries:
                        print(f"retry {trial.name}: {message}", flush=True)
                        submit(trial, attempt + 1)
                    else:
                        self._record(trial, "failed", attempt, error=message)
                        print(f"FAIL  {trial.name} after {attempt} attempt(s): {message}")
                    continue
                status = "done" if summary.get("finished", True) else "stopped"
                self._record(trial, status, attempt, **summary)
                print(f"{status:5s} {trial.name}: {_score_text(summary)}", flush=True)

    # -- summary ---------------------------------------------------------------------------

    def write_summary(self) -> dict[str, Any]:
        rows = [_row(self.outcomes[t.name]) for t in self.trials if t.name in self.outcomes]
        summary = {"trials": rows, "total": len(self.trials)}
        lines = [
            "| trial | task | variant | seed | status | updates | env steps | score "
            "| last-3 test return | attempts | note |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            last3 = "" if r["last3_return"] is None else f"{r['last3_return']:.1f}"
            score = "" if r["score"] is None else f"{r['score']:.1f}"
            lines.append(
                f"| {r['trial']} | {r['task']} | {r['variant']} | {r['seed']} | {r['status']} "
                f"| {r['updates'] or ''} | {r['env_steps'] or ''} | {score} | {last3} "
                f"| {r['attempts']} | {(r['error'] or '').replace('|', '/')} |"
            )
        groups = _group_means(rows)
        if groups:
            lines += [
                "",
                "Score: mean return of the final model's noise-free eval episodes "
                "(schedule.final-eval-episodes); ± is the sample std over seeds.",
                "",
                "| task | variant | seeds | score | mean last-3 test return |",
                "|---|---|---|---:|---:|",
            ]
            lines += [
                f"| {t} | {v} | {n} | {score} | {last3:.1f} |"
                for (t, v), (n, score, last3) in groups.items()
            ]
        table = "\n".join(lines) + "\n"
        atomic_write_text(self.dir / "summary.md", table)
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        plotted = [
            self.run_dir(t)
            for t in self.trials
            if (self.run_dir(t) / "metrics.jsonl").exists()
            and self.outcomes.get(t.name, {}).get("test_returns")
        ]
        if plotted:
            from planet_torch.training.plot import plot_runs

            summary["plot"] = str(plot_runs(plotted, self.dir / "summary.png"))
        summary["table"] = table
        return summary


def _same_config(recorded: Any, cfg: Config) -> bool:
    """Whether a trial record's config is ``cfg``, the fields it predates at their defaults (a
    sweep recorded before a config field existed still counts its finished trials)."""
    if not isinstance(recorded, dict):
        return False
    try:
        return Config.from_dict(recorded).to_dict() == cfg.to_dict()
    except (UserError, TypeError):  # a record of another version, or damaged
        return False


def _one_line_error(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error  # RayTaskError wraps the trial's exception
    text = f"{type(cause).__name__}: {cause}"
    lines = [line for line in str(text).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:300] if lines else type(cause).__name__


def _score_text(summary: dict[str, Any]) -> str:
    returns = summary.get("test_returns") or []
    last = sum(returns[-3:]) / len(returns[-3:]) if returns else float("nan")
    score = f", score {summary['score']:.1f}" if "score" in summary else ""
    return (
        f"{summary.get('updates')} updates, {summary.get('env_steps')} env steps, "
        f"last-3 test return {last:.1f}{score}"
    )


def _row(outcome: dict[str, Any]) -> dict[str, Any]:
    returns = outcome.get("test_returns") or []
    return {
        "trial": outcome["trial"],
        "task": outcome["task"],
        "variant": outcome["variant"],
        "seed": outcome["seed"],
        "status": outcome["status"],
        "attempts": outcome.get("attempts", 0),
        "updates": outcome.get("updates"),
        "env_steps": outcome.get("env_steps"),
        "score": outcome.get("score"),
        "last3_return": sum(returns[-3:]) / len(returns[-3:]) if returns else None,
        "run_dir": outcome.get("run_dir"),
        "error": outcome.get("error"),
    }


def _group_means(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, str, float]]:
    """(task, variant) -> (seeds, "mean ± std" of the scores or "", mean last-3 return)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["last3_return"] is not None:
            groups.setdefault((r["task"], r["variant"]), []).append(r)
    from planet_torch.training.results import mean_std

    means = {}
    for key, members in groups.items():
        scores = [r["score"] for r in members if r["score"] is not None]
        score = mean_std(scores, digits=1) if scores else ""
        last3 = float(np.mean([r["last3_return"] for r in members]))
        means[key] = (len(members), score, last3)
    return means


def sweep_record(tasks: str, seeds: str, variants: str, base: Config) -> dict[str, Any]:
    return {
        "tasks": tasks,
        "seeds": seeds,
        "variants": variants,
        "base_config": base.to_dict(),
        "command": " ".join(["planet", *sys.argv[1:]]),
    }


def write_sweep_record(sweep_dir: Path, record: dict[str, Any]) -> None:
    from planet_torch.training.run_dir import SWEEP_RECORD  # (it imports torch: not at the top)

    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / SWEEP_RECORD, json.dumps(record, indent=2) + "\n")


__all__ = [
    "VARIANTS",
    "Sweep",
    "SweepOptions",
    "Trial",
    "parse_seeds",
    "plan_trials",
    "run_trial",
]
