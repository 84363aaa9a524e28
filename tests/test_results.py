"""Benchmark results: CSV rows of scored runs, the table, the 2 × 3 grid and the demo's figure."""

import csv
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from run_helpers import assert_one_line_error, planet_here

from planet_torch import cli
from planet_torch.config import CPU, DEBUG, override
from planet_torch.published import DMC_TASKS, published
from planet_torch.training import plot as plot_module
from planet_torch.training import results as results_module
from planet_torch.training.plot import plot_runs, variant_colors
from planet_torch.training.results import (
    RUN_FIELDS,
    quiet_run,
    random_policy_row,
    reproduce_command,
    results_table,
)
from planet_torch.training.runs import budget_note, train_and_score

TASK = "cartpole-swingup"  # has published 100k scores to draw
# tab:red (Dreamer's square), the random policy's grey line
DREAMER_RED, RANDOM_GREY = (0.839, 0.153, 0.157), (0.5, 0.5, 0.5)


def pixels_of(path: Path, rgb: tuple[float, float, float], tolerance: float = 0.03) -> int:
    image = imread(path)[..., :3]
    return int((np.abs(image - np.array(rgb)).max(axis=-1) < tolerance).sum())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("results")
    dirs = []
    for seed in (0, 1):
        cfg = override(
            DEBUG,
            task=TASK,
            seed=seed,
            schedule={"max_env_steps": 400, "total_updates": 1000},
        )
        summary = train_and_score(cfg, root / f"seed{seed}", progress=False)
        assert summary["finished"] and summary["env_steps"] == 400 and "score" in summary
        dirs.append(root / f"seed{seed}")
    return dirs


def test_results_csvs_table_and_grid(runs, tmp_path):
    docs = tmp_path / "README.md"
    docs.write_text("intro\n<!-- dmc100k-table -->\nold table\n<!-- /dmc100k-table -->\nend\n")
    random_csv = tmp_path / "random.csv"
    random_csv.write_text("task,episodes,score,score_std,machine\ncartpole-swingup,10,27,3,x\n")
    paths = {
        "--csv": tmp_path / "runs.csv",
        "--curves": tmp_path / "curves.csv",
        "--random": random_csv,
        "--figure": tmp_path / "grid.png",
    }
    args = [str(a) for kv in paths.items() for a in kv]
    result = planet_here("results", *map(str, runs), *args, "--docs", str(docs))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(paths["--csv"].open()))
    assert [(r["task"], r["seed"]) for r in rows] == [(TASK, "0"), (TASK, "1")]
    assert tuple(rows[0]) == RUN_FIELDS
    assert rows[0]["env_steps"] == "400" and rows[0]["updates"] == "9"
    assert rows[0]["eval_episodes"] == "2" and rows[0]["machine"]
    assert 0 < float(rows[0]["action_ms"]) < 10_000  # per policy step while collecting
    assert rows[0]["command"].startswith(f"planet train --task {TASK} --preset debug --seed 0")
    assert "--schedule.max-env-steps 400" in rows[0]["command"]
    curves = list(csv.DictReader(paths["--curves"].open()))
    # test phases at 6 updates (320 env steps) and at the budget (9 updates, 400 env steps)
    assert [(c["seed"], c["updates"], c["env_steps"]) for c in curves] == [
        ("0", "6", "320"),
        ("0", "9", "400"),
        ("1", "6", "320"),
        ("1", "9", "400"),
    ]
    text = docs.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("end\n")
    line = next(x for x in text.splitlines() if x.startswith(f"| {TASK} |"))
    assert "| 2 | 27 | 297 | 326 |" in line  # seeds, random, PlaNet and Dreamer at 100k
    # Adding a run again replaces its rows.
    again = planet_here("results", str(runs[0]), *args, "--docs", str(docs))
    assert again.returncode == 0, again.stderr
    assert len(list(csv.DictReader(paths["--csv"].open()))) == 2
    assert len(list(csv.DictReader(paths["--curves"].open()))) == 4
    figure = paths["--figure"]
    assert figure.read_bytes()[:4] == b"\x89PNG" and imread(figure).std() > 0.02
    assert pixels_of(figure, DREAMER_RED) > 20, "published Dreamer point not drawn"
    assert pixels_of(figure, RANDOM_GREY) > 50, "random policy level not drawn"


def test_a_sweep_folder_adds_its_scored_trials_and_a_bad_path_adds_nothing(
    runs, tmp_path, monkeypatch
):
    """``planet results runs/ablations`` (a sweep folder) stands for its scored trials; an
    unscored one is said and skipped. A path among the runs that is no run folder (the sweep's
    trial records, as ``trials/*`` lists them) stops the command before any row is written."""
    sweep = tmp_path / "sweep"
    (sweep / "trials").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    for run in runs:
        shutil.copytree(run, sweep / "trials" / run.name)
        (sweep / "trials" / f"{run.name}.json").write_text("{}")  # as the sweep writes them
    unscored = sweep / "trials" / "seed9"
    shutil.copytree(runs[0], unscored)
    (unscored / "scores.json").unlink()
    out = tmp_path / "out"
    args = ["--csv", str(out / "runs.csv"), "--curves", str(out / "curves.csv")]
    args += ["--figure", str(out / "grid.png"), "--docs"]
    bad = planet_here("results", str(runs[0]), str(sweep / "trials" / "seed0.json"), *args)
    assert_one_line_error(bad, "seed0.json is not a run folder")
    assert not (out / "runs.csv").exists()  # the good run before it was not added either
    result = planet_here("results", str(sweep), *args)
    assert result.returncode == 0, result.stderr
    assert "skip seed9: not scored yet" in result.stdout
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["seed"] for r in rows] == ["0", "1"]
    # plot takes the sweep folder as all its trials; eval, which wants one run, says so
    plotted: list[list[Path]] = []
    draw = plot_module.plot_runs
    monkeypatch.setattr(
        plot_module, "plot_runs", lambda runs, *a: plotted.append(runs) or draw(runs, *a)
    )
    plot = planet_here("plot", str(sweep), "-o", str(out / "sweep.png"))
    assert plot.returncode == 0 and (out / "sweep.png").stat().st_size > 5000, plot.stderr
    assert plotted == [[sweep / "trials" / name for name in ("seed0", "seed1", "seed9")]]
    one = planet_here("eval", "--run-dir", str(sweep), "--episodes", "1")
    assert_one_line_error(one, "is a planet sweep folder; name one of its trials", "trials/seed0")


def test_table_lists_every_task_with_published_rows():
    runs = [
        {"task": "walker-walk", "variant": "planet", "seed": s, "score": v, "updates": 4750}
        | {"train_minutes": minutes, "eval_minutes": 2, "quiet": quiet}
        for s, v, minutes, quiet in ((0, 200.0, 60, "yes"), (1, 300.0, 90, "no"))
    ]
    table = results_table(runs, [{"task": "walker-walk", "score": 41.0}])
    lines = table.splitlines()
    assert len(lines) == 2 + 6
    walker = next(x for x in lines if x.startswith("| walker-walk |"))
    # mean ± sample std (n - 1) of 200 and 300
    assert walker == "| walker-walk | 250 ± 71 | 2 | 41 | 224 | 277 | 62 | 4750 |"  # one quiet run
    both = results_table([r | {"quiet": "yes"} for r in runs], [])
    assert "| 277 | 62-92 | 4750 |" in both  # the range of the quiet runs
    assert "| cup-catch | not run yet | 0 |  | 0 | 246 |" in table
    single = results_table(runs[:1], [])
    assert "| walker-walk | 200 | 1 |" in single  # one seed: no spread to show
    shared = results_table([r | {"quiet": "no"} for r in runs], [])
    assert "| walker-walk | 250 ± 71 | 2 |  | 224 | 277 | shared CPU | 4750 |" in shared
    assert "Dreamer (ours)" not in table  # no Dreamer runs: no column
    dreamer = [r | {"variant": "dreamer", "score": 310.0, "train_minutes": 40} for r in runs[:1]]
    side = results_table(runs + dreamer, []).splitlines()
    assert side[0].endswith("| Dreamer (ours) | seeds | Dreamer minutes |")
    assert side[1].count("|") == side[0].count("|")
    walker = next(x for x in side if x.startswith("| walker-walk |"))
    assert walker.endswith("| 62 | 4750 | 310 | 1 | 42 |")  # Dreamer's own quiet minutes
    shared_dreamer = results_table(runs + [r | {"quiet": "no"} for r in dreamer], [])
    assert "| 310 | 1 | shared CPU |" in shared_dreamer
    assert next(x for x in side if x.startswith("| cup-catch |")).endswith("| not run yet | 0 |  |")


def test_table_and_figure_of_other_tasks(monkeypatch, tmp_path):
    """A run of another task (``gym:Pendulum-v1``, scored at 10k env steps) gets its own row,
    after the six DMC-100k rows where those are being run, alone where nothing else is."""
    pend = {"task": "gym:Pendulum-v1", "variant": "planet", "seed": 0, "score": -909.0}
    pend |= {"updates": 4500, "env_steps": "10000", "train_minutes": 85, "eval_minutes": 2}
    pend |= {"quiet": "yes"}
    alone = results_table([pend], [{"task": "gym:Pendulum-v1", "score": -1381.0}]).splitlines()
    assert len(alone) == 3 and alone[0] == (
        "| task | score (ours) | seeds | random policy | minutes per run | updates |"
    )
    assert alone[1].count("|") == alone[0].count("|")
    assert alone[2] == "| gym:Pendulum-v1 | -909 at 10,000 env steps | 1 | -1381 | 87 | 4500 |"
    walker = pend | {"task": "walker-walk", "score": 200.0, "env_steps": "100000"}
    mixed = results_table([walker, pend], []).splitlines()
    assert mixed[0].startswith("| task | score at 100k (ours, cpu preset) |") and len(mixed) == 9
    assert mixed[-1].startswith("| gym:Pendulum-v1 | -909 at 10,000 env steps | 1 |")
    assert "| walker-walk | 200 | 1 |  | 224 | 277 | 87 | 4500 |" in mixed
    panels: list[list[str]] = []
    monkeypatch.setattr(
        results_module, "draw_curves", lambda *a, tasks, **k: panels.append(tasks) or tmp_path
    )
    curve = {"variant": "planet", "seed": 0, "env_steps": 10000, "updates": 4500}
    curve |= {"wall_minutes": 80, "test_return": -800}
    for rows in ([pend], [walker, pend]):
        curves = [curve | {"task": r["task"]} for r in rows]
        results_module.results_figure(curves, rows, [], tmp_path / "f.png")
    assert panels[0] == ["gym:Pendulum-v1"]
    assert panels[1] == [*DMC_TASKS, "gym:Pendulum-v1"]


def test_demo_figure_draws_random_level_and_reference(runs):
    out = plot_runs([runs[0]], runs[0] / "plots" / "demo.png")
    assert pixels_of(out, DREAMER_RED) > 20 and pixels_of(out, RANDOM_GREY) > 50
    bare = plot_runs([runs[0]], runs[0] / "plots" / "bare.png", reference="none")
    assert pixels_of(bare, DREAMER_RED) == 0  # the check above can fail


def test_budget_note_projects_the_benchmark_run():
    summary = {
        "env_steps": 7000,
        "rates": {
            "seconds_per_update": 0.2,
            "seconds_per_action": 0.05,
            "env_steps_per_second": 1000.0,
        },
    }
    cfg = override(DEBUG, task=TASK)
    note = budget_note(cfg, "cpu", summary)
    assert note is not None
    # 9500 updates × 0.2 s + (95 + 10 + 10) episodes × (125 × 0.05 s + 1 s) = 2734 s ≈ 46 min
    assert "9,500 updates, 95 train, 10 test and 10 eval episodes, about 46 min" in note
    assert note.count(f"planet train --task {TASK} --preset cpu --seed 0\n") == 1
    assert "PlaNet 297, Dreamer 326" in note
    assert budget_note(cfg, "debug", summary) is None  # no budget in that preset
    assert budget_note(cfg, "cpu", summary | {"env_steps": 100_000}) is None  # reached it
    dreamer = budget_note(override(cfg, algo="dreamer"), "cpu", summary)
    assert f"planet train --task {TASK} --preset cpu --seed 0 --algo dreamer\n" in dreamer


def test_random_policy_row_and_command():
    row = random_policy_row("test-reach", episodes=3)
    assert row["episodes"] == 3 and row["machine"]
    assert row == random_policy_row("test-reach", episodes=3) | {"machine": row["machine"]}
    assert reproduce_command(override(DEBUG, seed=3)) == (
        "planet train --task cartpole-balance --preset debug --seed 3"
    )
    # when a run checkpoints changes nothing it computes: no flag for it either
    often = override(DEBUG, seed=3, schedule={"checkpoint_every_minutes": 0.0})
    assert reproduce_command(often).endswith("--seed 3")
    # another algorithm's section changes nothing in a run: no flag for it
    changed = {"dreamer": {"units": 7}, "planner": {"horizon": 7}}
    assert reproduce_command(override(DEBUG, **changed)).endswith("--planner.horizon 7")
    assert reproduce_command(override(DEBUG, algo="dreamer", **changed)).endswith(
        "--seed 0 --algo dreamer --dreamer.units 7"
    )
    # the command a row records is one the CLI takes, and it rebuilds the run's config
    # (booleans are --flag / --no-flag, None is None): a run on exact frames, session 17
    changed = {
        "env": {"exact_render": True},
        "planner": {"warm_start": False, "horizon": 15},
        "loss": {"free_nats": 2.5},
        "schedule": {"max_env_steps": None},
    }
    run_cfg = override(CPU, task="cheetah-run", seed=1, **changed)
    args = shlex.split(reproduce_command(run_cfg))[1:]
    assert "--env.exact-render" in args and "--planner.no-warm-start" in args
    assert cli.parse(args).config == run_cfg
    assert published("cup-catch", 100_000) == [
        ("PlaNet", 100_000, 0.0),
        ("Dreamer", 100_000, 246.0),
    ]


def test_quiet_means_all_cpus_and_no_other_load():
    two = {"logical_cpus": 2, "affinity_cpus": 2, "torch_threads": 2}
    one = two | {"torch_threads": 1}
    assert quiet_run([2.1, 2.3], [two]) == "yes"
    assert quiet_run([3.4, 3.0], [two]) == "no"  # another process shared the CPU
    assert quiet_run([2.0, 2.1], [one]) == "no"  # 1 thread beside another 1-thread run
    assert quiet_run([2.0], [two, one]) == "no"  # resumed with fewer threads
    assert quiet_run([], [two]) == ""
    # Measured other processes' CPUs decide when present: a short job beside the run shows in
    # one interval's share though it leaves the mean load low.
    assert quiet_run([2.1, 2.2], [two], [0.02, 0.03]) == "yes"
    assert quiet_run([2.1, 2.2], [two], [0.02, 0.9]) == "no"
    assert quiet_run([], [two], [0.02]) == "yes"
    assert quiet_run([2.0], [one], [0.0]) == "no"


def test_a_variant_keeps_its_colour_in_every_panel():
    few = variant_colors({"planet", "dreamer"})
    many = variant_colors({"planet-u50", "dreamer", "planet", "dreamer-e0"})
    assert few["planet"] == many["planet"] == "#1f77b4"  # the preset: first in the cycle
    assert few["dreamer"] == many["dreamer"]  # "dreamer" sorts before the others either way
    assert len(set(many.values())) == 4


def test_a_curve_of_one_test_phase_shows_as_a_point():
    """A run with one test phase so far (a line of one point draws nothing) gets a marker."""
    import matplotlib.pyplot as plt

    from planet_torch.training.plot import Curve, _draw_variant

    fig, ax = plt.subplots()
    one = Curve("t", "planet", 0, np.array([320]), np.array([6.1]))
    two = Curve("t", "ssm", 0, np.array([320, 400]), np.array([6.1, 7.0]))
    _draw_variant(ax, "planet", [one], "C0")
    _draw_variant(ax, "ssm", [two], "C1")
    assert [line.get_marker() for line in ax.get_lines()] == ["o", "None"]
    plt.close(fig)
