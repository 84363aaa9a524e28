"""``planet``: the command line, built by tyro from the config dataclasses.

Every config field is a flag (``--model.belief-size 100``); ``--preset`` picks the defaults those
flags start from. User mistakes print one line starting with ``planet: error:`` and exit 2;
tracebacks are reserved for bugs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tyro

from planet_torch.config import DEFAULT_PRESET, Config, PresetName, preset, task_slug
from planet_torch.errors import UserError
from planet_torch.published import DMC_TASKS

# ---------------------------------------------------------------------------------------------
# Commands: each is a frozen dataclass whose fields are its flags, with a run() that does the work.
# ---------------------------------------------------------------------------------------------

ConfigArg = Annotated[Config, tyro.conf.arg(name="")]  # config fields without a "config." prefix


def default_run_dir(cfg: Config, preset_name: str) -> Path:
    return Path("runs") / f"{task_slug(cfg.task)}-{preset_name}-seed{cfg.seed}"


@dataclass(frozen=True)
class Collect:
    """Collect random-policy episodes into a run folder (PlaNet's seed episodes) and show one."""

    config: ConfigArg = field(default_factory=Config)
    preset: PresetName = DEFAULT_PRESET
    """Defaults the config starts from: paper (the original's values), cpu, debug."""
    run_dir: Path | None = None
    """Run folder; default runs/<task>-<preset>-seed<seed>."""
    episodes: int | None = None
    """Random episodes in train_episodes/; default schedule.seed-episodes."""
    test_episodes: int | None = None
    """Random episodes in test_episodes/; default schedule.test-seed-episodes."""
    video: bool = True
    """Also write videos/random_episode.mp4 of the first train episode."""

    def run(self) -> int:
        from planet_torch.replay import EpisodeDir
        from planet_torch.training.collect import collect_random
        from planet_torch.training.run_dir import RunDir
        from planet_torch.training.video import write_video

        cfg = self.config.validate()
        if (self.episodes is not None and self.episodes < 1) or (
            self.test_episodes is not None and self.test_episodes < 0
        ):
            raise UserError("--episodes must be >= 1 and --test-episodes >= 0")
        run = RunDir(self.run_dir or default_run_dir(cfg, self.preset))
        _writer = run.open_for_writing(cfg)  # held to the end: never beside a live run
        n_train = cfg.schedule.seed_episodes if self.episodes is None else self.episodes
        n_test = (
            cfg.schedule.test_seed_episodes if self.test_episodes is None else self.test_episodes
        )
        for split, count in (("train", n_train), ("test", n_test)):
            for item in collect_random(cfg, run, split, count):
                print(
                    f"{split:5s} episode {item.path.name}: return {item.episode_return:8.2f}, "
                    f"{item.policy_steps} policy steps = {item.policy_steps * cfg.action_repeat} env steps"
                )
        train = EpisodeDir(run.train_episodes)
        print(
            f"train_episodes/: {len(train)} episodes, test_episodes/: {len(EpisodeDir(run.test_episodes))}"
        )
        if self.video and len(train):
            first = next(iter(train))
            path = write_video(run.videos / "random_episode.mp4", first.image)
            print(f"video of a random episode: {path}")
        print(f"run folder: {run.path.resolve()}")
        return 0


@dataclass(frozen=True)
class Doctor:
    """Check that this machine can run planet-torch headless; print a fix for every failed check."""

    run_dir: Path = Path(".")
    """Where runs will be written (its free disk space is checked)."""
    render_frames: int = 200
    """Frames rendered to measure the MuJoCo render speed."""
    tasks: tuple[str, ...] = ()
    """Also build these tasks and check their frames (e.g. dmc:walker-run gym:Pendulum-v1, or
    comma-separated as sweep takes them)."""

    def run(self) -> int:
        from planet_torch.doctor import run_checks

        if self.render_frames < 1:
            raise UserError("--render-frames must be >= 1")
        return run_checks(self.run_dir, self.render_frames, self.tasks)


def _no_default_run_to_resume(default: Path) -> None:
    """``planet train --resume`` without ``--run-dir`` where the default folder holds no run
    (the task, preset and seed flags name it): say so, and which runs there are to resume."""
    from planet_torch.training.run_dir import RunDir

    here = sorted(p.name for p in default.parent.glob("*") if RunDir(p).exists())
    shown = ", ".join(here[:8]) + (f" and {len(here) - 8} more" if len(here) > 8 else "")
    raise UserError(
        f"nothing to resume in {default} (without --run-dir, the folder --task, --preset and "
        "--seed name); "
        + (
            f"runs in {default.parent}/: {shown}: add --run-dir {default.parent}/NAME"
            if here
            else "drop --resume to start it"
        )
    )


@dataclass(frozen=True)
class Train:
    """Train PlaNet (or --algo ddpg); Ctrl-C checkpoints, --resume continues exactly."""

    config: ConfigArg = field(default_factory=Config)
    preset: PresetName = DEFAULT_PRESET
    """Defaults the config starts from: paper (the original's values), cpu, debug."""
    run_dir: Path | None = None
    """Run folder; default runs/<task>-<preset>-seed<seed>."""
    resume: bool = False
    """Continue the run in --run-dir (its config.json supplies the defaults)."""
    progress: bool | None = None
    """Show a progress bar; default: only when stdout is a terminal."""
    dry_run: bool = False
    """Print what the run would do (updates, episodes, env and policy steps, RAM) and stop."""

    def run(self) -> int:
        from planet_torch.training.plot import plot_runs
        from planet_torch.training.run_dir import RunDir
        from planet_torch.training.runs import budget_note, describe_plan, train_and_score

        run_dir = self.run_dir or default_run_dir(self.config, self.preset)
        if self.dry_run:
            print(describe_plan(self.config, run_dir, resume=self.resume))
            return 0
        if self.resume and self.run_dir is None and not RunDir(run_dir).exists():
            _no_default_run_to_resume(run_dir)
        summary = train_and_score(self.config, run_dir, resume=self.resume, progress=self.progress)
        run = RunDir(run_dir)
        returns = summary["test_returns"]
        last = ", ".join(f"{r:.1f}" for r in returns[-3:]) or "none yet"
        print(
            f"{summary['updates']} updates, {summary['env_steps']} env steps, "
            f"{summary['wall_seconds'] / 60:.1f} min; last test returns: {last}"
        )
        if "score" in summary:
            print(
                f"score: {summary['score']:.1f} ± {summary['score_std']:.1f} (mean return of "
                f"{self.config.schedule.final_eval_episodes} noise-free episodes of the final "
                f"model) -> {run.path / 'scores.json'}"
            )
        if returns:
            print(f"learning curve: {plot_runs([run_dir], run.plots / 'curves.png')}")
        videos = sorted(run.videos.glob("*.mp4"))
        if videos:
            print(f"videos: {run.videos} (newest: {videos[-1].name})")
        print(f"run folder: {run.path}  (tensorboard --logdir {run.path})")
        note = budget_note(self.config, self.preset, summary)
        if note:
            print(note)
        return 0


@dataclass(frozen=True)
class EvalPlanner:
    """PlaNet's planner for this evaluation only; unset fields stay as the run trained."""

    test_imagination: Literal["sample", "mean"] | None = None
    """Rank candidates on one sampled future each, or on the prior means."""
    candidates: int | None = None
    """Action sequences per CEM iteration."""
    top_k: int | None = None
    """Best candidates the Gaussian is refit to."""
    iterations: int | None = None
    """CEM iterations per decision."""
    horizon: int | None = None
    """Decisions imagined ahead."""

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Eval:
    """Play the latest checkpoint of a run without exploration noise; write scores.json."""

    run_dir: Path
    """The run folder to evaluate."""
    episodes: int = 10
    """Episodes to play."""
    video: Literal["mp4", "gif", "none"] = "mp4"
    """Write a video of the first episode to <run>/videos/."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the networks run."""
    workers: int = 1
    """Episodes played at once, one environment per worker process, planned in one batched CEM
    call per step (PlaNet runs; 1 = one episode after another in this process)."""
    planner: EvalPlanner = EvalPlanner()
    """Play with other planner settings than the run's (kept in scores.json)."""

    def run(self) -> int:
        from planet_torch.training.evaluate import evaluate

        scores = evaluate(
            self.run_dir,
            self.episodes,
            None if self.video == "none" else self.video,
            self.device,
            self.workers,
            self.planner.changes(),
        )
        print(
            f"mean return {scores['mean']:.1f} ± {scores['std']:.1f} over {scores['episodes']} "
            f"episodes -> {scores['scores_path']}"
        )
        for task, value in scores.get("per_task", {}).items():
            print(f"  {task}: mean return {value:.1f}")
        if "video" in scores:
            print(f"video: {scores['video']}")
        return 0


@dataclass(frozen=True)
class Plot:
    """Plot test return vs env steps of one or more runs: one panel per task (three per row),
    mean and spread over seeds, the random policy's level (the runs' seed episodes), the final
    scores (scores.json) and published scores to compare with."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Run folders (seeds of the same task and variant are averaged); a sweep folder stands
    for its trials."""
    output: Annotated[Path, tyro.conf.arg(aliases=("-o",))] = Path("curves.png")
    """Image file to write (png, pdf or svg)."""
    metric: str = "test/return"
    """Which logged scalar to plot."""
    reference: Literal["dmc100k", "paper", "none"] = "dmc100k"
    """Compare with: published PlaNet/Dreamer scores at 100k (and 500k) env steps (CURL's
    Table 1), PlaNet's Table 1 after 1000 episodes, or nothing."""

    def run(self) -> int:
        from planet_torch.training.plot import figure_file, plot_runs
        from planet_torch.training.run_dir import expand_sweeps

        if not self.runs:
            raise UserError("name the run folders to plot, e.g. planet plot runs/* -o curves.png")
        figure_file(self.output, "-o")
        runs = expand_sweeps(self.runs)
        output = plot_runs(runs, self.output, self.metric, self.reference)
        print(f"wrote {output}")
        return 0


_RESULTS = Path("docs/results")


@dataclass(frozen=True)
class Results:
    """Add scored runs to the benchmark CSVs (one row per run, its curve), then remake the
    table (between <!-- dmc100k-table --> markers in --docs files) and the figure from the CSVs.

    Adding a run again replaces its rows: commit each finished run as soon as it exists."""

    runs: tyro.conf.Positional[tuple[Path, ...]] = ()
    """Scored run folders (with scores.json: the end of a run or planet eval) to add; a sweep
    folder adds its scored trials."""
    csv: Path = _RESULTS / "dmc100k.csv"
    """One row per run: task, variant, seed, score, env steps, updates, minutes, machine, command."""
    curves: Path = _RESULTS / "dmc100k-curves.csv"
    """One row per test phase of every run."""
    random: Path = _RESULTS / "random.csv"
    """The random policy's scores (planet random-policy)."""
    figure: Path = _RESULTS / "dmc100k.png"
    """The grid of learning curves with the random level and the published points."""
    docs: tuple[Path, ...] = (Path("README.md"), _RESULTS / "README.md")
    """Markdown files whose table between the markers is replaced (files without them are skipped)."""

    def run(self) -> int:
        from planet_torch.fileio import writable_file
        from planet_torch.training import results as R
        from planet_torch.training.plot import figure_file

        writable_file(self.csv, "--csv")
        writable_file(self.curves, "--curves")
        figure_file(self.figure, "--figure")
        if self.random.is_dir():
            raise UserError(f"--random {self.random} is a folder; name the random policy's CSV")
        # every run is read before any row is written: a bad folder among them changes nothing
        added = [R.run_rows(run_dir) for run_dir in R.scored_runs(self.runs)]
        for row, curve in added:
            R.upsert(self.csv, R.RUN_FIELDS, [row], R.RUN_KEY)
            R.upsert(self.curves, R.CURVE_FIELDS, curve, R.RUN_KEY)
            print(f"{row['task']} seed {row['seed']}: score {row['score']} -> {self.csv}")
        runs, curves, random = (R.read_csv(p) for p in (self.csv, self.curves, self.random))
        if not runs:
            raise UserError(f"{self.csv} holds no runs yet; pass scored run folders to add")
        table = R.results_table(runs, random)
        print(table, end="")
        for doc in self.docs:
            if doc.exists() and R.update_docs(doc, table):
                print(f"table updated in {doc}")
        if curves:
            print(f"figure: {R.results_figure(curves, runs, random, self.figure)}")
        return 0


@dataclass(frozen=True)
class RandomPolicy:
    """Score the uniform random policy on tasks as runs are scored (eval seeds); add to a CSV."""

    tasks: str = ",".join(DMC_TASKS)
    """Comma-separated task names."""
    episodes: int = 10
    """Episodes per task."""
    csv: Path = _RESULTS / "random.csv"
    """CSV to add the rows to (a task's row is replaced)."""

    def run(self) -> int:
        from planet_torch.fileio import writable_file
        from planet_torch.sweep import task_names
        from planet_torch.training import results as R

        if self.episodes < 1:
            raise UserError("--episodes must be >= 1")
        writable_file(self.csv, "--csv")  # before minutes of episodes, not after them
        rows = []
        for task in task_names(self.tasks):
            rows.append(R.random_policy_row(task, self.episodes))
            print(f"{task}: {rows[-1]['score']} ± {rows[-1]['score_std']}", flush=True)
        R.upsert(self.csv, R.RANDOM_FIELDS, rows, ("task",))
        print(f"wrote {self.csv}")
        return 0


@dataclass(frozen=True)
class Inspect:
    """Figures + report.html: open-loop predictions, rewards, what the latent knows, the planner."""

    run_dir: Path
    """The PlaNet run folder to inspect."""
    checkpoint: Path | None = None
    """A checkpoint file (default: the run's latest)."""
    output: Annotated[Path | None, tyro.conf.arg(aliases=("-o",))] = None
    """Folder for the figures and report.html (default: <run>/inspect-<updates>/)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the networks run."""
    horizon: int = 30
    """Policy steps imagined open loop after the 5 context frames."""
    planner_steps: tuple[int, ...] = (0, 20, 60)
    """Steps of a fresh episode at which the planner's decision is shown."""
    sim_candidates: int = 100
    """Candidates of the true-simulator planner shown beside it (dm_control tasks)."""
    open_loop_start: int = 0
    """Row of the test episode where the 5 context frames begin (0: its first step, where
    some tasks start from a random pose seen once per episode)."""

    def run(self) -> int:
        from planet_torch.training.inspection import inspect_run

        if self.horizon < 1 or self.sim_candidates < 1:
            raise UserError("--horizon and --sim-candidates must be >= 1")
        report = inspect_run(
            self.run_dir,
            self.checkpoint,
            self.output,
            self.device,
            self.horizon,
            self.planner_steps,
            self.sim_candidates,
            open_loop_start=self.open_loop_start,
        )
        print(f"report: {report}  (figures beside it)")
        return 0


@dataclass(frozen=True)
class Sweep:
    """Tasks × seeds × variants (the paper's ablations) as Ray tasks; a summary table and plot.

    Each trial is an ordinary run folder under <sweep-dir>/trials/. Running the same command
    again skips finished trials and resumes unfinished ones. Config flags apply to all trials."""

    config: ConfigArg = field(default_factory=Config)
    preset: PresetName = DEFAULT_PRESET
    """Defaults every trial's config starts from: paper, cpu, debug."""
    tasks: str = "cartpole-balance"
    """Comma-separated task names."""
    seeds: str = "0"
    """Seeds: a range 0-4, a list 0,1,5, or both 0-2,9."""
    variants: str = "planet"
    """Comma-separated: planet (the RSSM), ssm (purely stochastic), deterministic, random
    (the paper's ablations), dreamer (a latent actor-critic), ddpg (the model-free baseline)."""
    sweep_dir: Path | None = None
    """Sweep folder; default runs/sweep-<preset>."""
    address: str | None = None
    """An existing Ray cluster (auto, host:6379 or ray://host:10001); default: a local one."""
    num_cpus: int | None = None
    """CPUs of the local Ray cluster (default: all of this machine's)."""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves for each trial (also its torch threads)."""
    gpus_per_trial: float = 0.0
    """GPUs Ray reserves for each trial (fractions share one GPU)."""
    retries: int = 1
    """Times a failed trial is started again (resuming its checkpoint) before it is reported."""
    dry_run: bool = False
    """List the trials, their updates and env steps and which would run, resume or be skipped,
    with every task's env built once to check it; start nothing, write nothing."""

    def run(self) -> int:
        from planet_torch.fileio import writable_folder
        from planet_torch.sweep import Sweep as SweepRunner
        from planet_torch.sweep import SweepOptions, plan_trials, sweep_record, write_sweep_record

        sweep_dir = self.sweep_dir or Path("runs") / f"sweep-{self.preset}"
        defaults = preset(self.preset)
        for flag, given, default, instead in [
            ("--task", self.config.task, defaults.task, "--tasks"),
            ("--seed", self.config.seed, defaults.seed, "--seeds"),
        ]:
            if given != default:  # else every trial would quietly replace it
                raise UserError(
                    f"planet sweep takes {instead} {given} (comma-separated), not {flag} {given}"
                )
        trials = plan_trials(self.config, self.tasks, self.seeds, self.variants)
        options = SweepOptions(
            self.address, self.cpus_per_trial, self.gpus_per_trial, self.retries, self.num_cpus
        )
        runner = SweepRunner(sweep_dir, trials, options)  # checks the options, writes nothing
        if self.dry_run:
            print(runner.describe())
            return 0
        runner.check_tasks()
        writable_folder(sweep_dir, "--sweep-dir")
        write_sweep_record(
            sweep_dir, sweep_record(self.tasks, self.seeds, self.variants, self.config)
        )
        print(f"sweep: {len(trials)} trials -> {sweep_dir}")
        summary = runner.run()
        print(summary["table"], end="")
        failed = [r for r in summary["trials"] if r["status"] == "failed"]
        print(
            f"summary: {sweep_dir / 'summary.md'}"
            + (f", plot: {summary['plot']}" if "plot" in summary else "")
        )
        if failed:
            print(
                f"planet: {len(failed)} of {len(trials)} trials failed; logs in {sweep_dir / 'logs'}",
                file=sys.stderr,
            )
            return 1
        return 0


def _commands(cfg: Config, preset_name: PresetName) -> Any:
    """The tyro union of subcommands, with config defaults taken from the chosen preset."""
    sub = tyro.conf.subcommand
    return Union[  # noqa: UP007 -- tyro needs a runtime Union of Annotated types
        Annotated[Train, sub("train", default=Train(config=cfg, preset=preset_name))],
        Annotated[Eval, sub("eval")],
        Annotated[Plot, sub("plot")],
        Annotated[Inspect, sub("inspect")],
        Annotated[Collect, sub("collect", default=Collect(config=cfg, preset=preset_name))],
        Annotated[Doctor, sub("doctor", default=Doctor())],
        Annotated[Sweep, sub("sweep", default=Sweep(config=cfg, preset=preset_name))],
        Annotated[Results, sub("results", default=Results())],
        Annotated[RandomPolicy, sub("random-policy", default=RandomPolicy())],
    ]


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Peek:
    """The flags that decide the defaults of all the others."""

    preset: PresetName = DEFAULT_PRESET
    resume: bool = False
    run_dir: Path | None = None


def _one_line(message: str) -> str:
    """tyro's boxed, multi-line error, condensed to the one sentence a user needs."""
    text = re.sub(r"[╭╮╰╯│─]+", " ", message)
    text = re.split(r"Argument helptext:|For full helptext|usage:", text)[0]
    text = " ".join(text.split())
    return text.strip() or "invalid arguments"


def _tyro(kind: Any, args: Sequence[str], **kwargs: Any) -> Any:
    """tyro.cli, with its argument errors turned into a one-line UserError."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(kind, args=args, prog="planet", **kwargs)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        raise UserError(f"{_one_line(captured.getvalue())} (see planet --help)") from None


def parse(args: Sequence[str]) -> Any:
    """The command object ``planet ARGS`` runs (its defaults: the preset, or a resumed run's
    config); a user's mistake raises :class:`UserError`."""
    peek, _ = _tyro(_Peek, args, return_unknown_args=True, add_help=False)
    defaults = preset(peek.preset)
    if peek.resume and peek.run_dir is not None:
        # A resumed run starts from its own config; flags may still change resumable fields.
        from planet_torch.training.run_dir import RunDir

        defaults = RunDir(peek.run_dir).load_config()
    return _tyro(
        _commands(defaults, peek.preset),
        args,
        description="PlaNet in plain PyTorch: train, plan, evaluate, explain. Headless. "
        "`planet --version`: the versions a bug report needs.",
    )


def version_line() -> str:
    """``planet --version``: this package and the versions a bug report needs, read from the
    installed metadata (nothing imported)."""
    from planet_torch.doctor import KEY_PACKAGES, installed_version

    packages = ", ".join(f"{n} {installed_version(n) or 'missing'}" for n in KEY_PACKAGES)
    return (
        f"planet-torch {installed_version('planet-torch') or 'missing'} "
        f"(Python {platform.python_version()}; {packages})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        print(version_line())
        return 0
    try:
        return int(parse(args).run() or 0)
    except UserError as error:
        print(f"planet: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("planet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `planet ... | head` closed the pipe: stop quietly, as Unix tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE, the status a shell shows for a closed pipe
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        print(
            "planet: error: out of memory ("
            + " ".join(str(error).split())[:160]
            + "); lower --data.batch-size, --data.chunk-length or --planner.candidates, or use "
            "--preset cpu (see `planet doctor`); a training run keeps its last checkpoint and "
            "--resume continues it",
            file=sys.stderr,
        )
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not raise again."""
    # (no file descriptor to point, as under a test's capture: nothing to silence)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _out_of_memory(error: BaseException) -> bool:
    """CPU allocator failures, CUDA out-of-memory (torch.OutOfMemoryError is a RuntimeError)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return any(
        marker in text
        for marker in (
            "not enough memory",
            "out of memory",
            "DefaultCPUAllocator",
            "std::bad_alloc",
        )
    )


if __name__ == "__main__":
    sys.exit(main())
