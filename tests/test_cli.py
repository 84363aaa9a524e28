"""The `planet` command as a user types it: real subprocesses, real files, and every user error
in one table (USER_ERRORS): one line, exit 2, nothing written. The table goes through the CLI's
own ``main`` in this process (36 fresh interpreters cost a minute of imports); the tests below it
and test_troubleshooting run real subprocesses, so the entry point itself is covered too."""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from run_helpers import assert_one_line_error, planet, planet_here

# Every mistake a user can type, with the folders it points at: {ref} a finished PlaNet run,
# {ddpg} a DDPG run, {collected} a run with episodes and no checkpoint yet, {junk} a file that is
# no checkpoint, {file} a plain file, {tmp} a fresh folder. (command, what the one line must say.)
# Each: exit 2, one line "planet: error: ...", no traceback, nothing written anywhere it points.
USER_ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    # what to run
    "unknown task": (
        "collect --task cartpole-swingupp --run-dir {tmp}/r",
        ("unknown task", "cartpole-swingup", "cheetah-run"),
    ),
    "unknown dm_control task": (
        "train --preset debug --task dmc:walker-rnu --run-dir {tmp}/r",
        ("did you mean dmc:walker-run",),
    ),
    "multi-task with two action repeats": (
        "train --preset debug --task cartpole-balance+walker-walk --run-dir {tmp}/r",
        ("--env.action-repeat", "walker-walk 2"),
    ),
    "unknown preset": ("collect --preset fast --run-dir {tmp}/r", ("fast", "paper")),
    "unknown algorithm": ("train --algo dqn --preset debug --run-dir {tmp}/r", ("'dqn'",)),
    "a field's value of the wrong type": (
        "collect --model.belief-size abc --run-dir {tmp}/r",
        ("belief-size",),
    ),
    "a field out of range": ("collect --planner.top-k 0 --run-dir {tmp}/r", ("top-k",)),
    # each had ended in a traceback, or trained on a nonsense value (config.BOUNDS)
    "a zero cnn depth": (
        "train --preset debug --model.cnn-depth 0 --run-dir {tmp}/r",
        ("model.cnn-depth must be >= 1 (got 0)",),
    ),
    "no test episodes": (
        "train --preset debug --schedule.test-episodes 0 --run-dir {tmp}/r",
        ("schedule.test-episodes must be >= 1",),
    ),
    "action repeat 0 (was the task's own, silently)": (
        "train --preset debug --env.action-repeat 0 --run-dir {tmp}/r",
        ("env.action-repeat must be >= 1 (got 0)",),
    ),
    "a negative loss scale": (
        "train --preset debug --loss.kl-scale -1 --run-dir {tmp}/r",
        ("loss.kl-scale must be >= 0",),
    ),
    "Dreamer's actor with no spread": (
        "train --preset debug --algo dreamer --dreamer.init-std 0 --run-dir {tmp}/r",
        ("dreamer.init-std must be > 0",),
    ),
    "a NaN": ("train --preset debug --planner.train-noise nan --run-dir {tmp}/r", ("(got nan)",)),
    "a run folder that holds other files and no run": (
        "train --preset debug --run-dir {root}",
        ("holds other files and no run (a-file, badmachines, badrange, ...)", "--run-dir"),
    ),
    "a factory that needs what planet does not pass": (
        "train --preset debug --task py:os.path:join --run-dir {tmp}/r",
        ("join() needs a,", "give the others defaults"),
    ),
    # output files, checked before the work whose result they hold (had been tracebacks)
    "plot nothing": ("plot -o {tmp}/c.png", ("name the run folders",)),
    "plot to no figure format": ("plot {ref} -o {tmp}/c.xyz", ("no figure format .xyz",)),
    "plot under a file": ("plot {ref} -o {file}/c.png", ("cannot create", "choose another -o")),
    "random policy into a folder": (
        "random-policy --tasks cartpole-swingup --episodes 1 --csv {tmp}",
        ("--csv", "is a folder"),
    ),
    "results into a folder": (
        "results --csv {tmp} --curves {tmp}/c.csv --random {tmp}/r.csv --figure {tmp}/f.png",
        ("--csv", "is a folder"),
    ),
    "results to no figure format": (
        "results --csv {tmp}/a.csv --curves {tmp}/c.csv --random {tmp}/r.csv --figure {tmp}/f.xyz",
        ("--figure", "no figure format"),
    ),
    "sweep into a file": (
        "sweep --preset debug --sweep-dir {file}",
        ("cannot create", "choose another --sweep-dir"),
    ),
    "sweep on no CPUs": ("sweep --num-cpus 0 --sweep-dir {tmp}/s", ("--num-cpus must be >= 1",)),
    "a sweep given --task": (  # every trial would have replaced it with --tasks' default
        "sweep --preset debug --task cheetah-run --sweep-dir {tmp}/s",
        ("planet sweep takes --tasks cheetah-run (comma-separated), not --task cheetah-run",),
    ),
    "a sweep given --seed": (
        "sweep --preset debug --seed 3 --sweep-dir {tmp}/s",
        ("takes --seeds 3 (comma-separated), not --seed 3",),
    ),
    "doctor rendering no frames": ("doctor --render-frames 0", ("--render-frames must be >= 1",)),
    # run folders damaged by hand (planet itself writes every file atomically)
    "a config.json value of the wrong type": (
        "eval --run-dir {badtype}",
        ("badtype/config.json: config field seed is 'x', not an int",),
    ),
    "a config.json value out of range": (
        "inspect --run-dir {badrange} -o {tmp}/i",
        ("badrange/config.json: model.cnn-depth must be >= 1 (got 0)",),
    ),
    "a damaged scores.json": (
        "plot {badscores} -o {tmp}/p.png",
        ("scores.json is unreadable", "planet eval --run-dir"),
    ),
    "a machines.json of another shape": (
        "results {badmachines} --csv {tmp}/r.csv --curves {tmp}/c.csv --random {tmp}/x.csv "
        "--figure {tmp}/f.png --docs",
        ("machines.json holds a dict, not a list", "delete it"),
    ),
    "cuda without cuda": (
        "train --preset debug --device cuda --run-dir {tmp}/r",
        ("CUDA",),
    ),
    # run folders
    "collect -3 episodes": (
        "collect --episodes -3 --run-dir {tmp}/r",
        ("--episodes must be >= 1",),
    ),
    "collect 0 episodes": ("collect --episodes 0 --run-dir {tmp}/r", ("--episodes must be >= 1",)),
    "collect -1 test episodes": (
        "collect --test-episodes -1 --run-dir {tmp}/r",
        ("--episodes must be >= 1",),
    ),
    "collect into a run of another config": (
        "collect --preset debug --task cartpole-balance --run-dir {collected} "
        "--model.belief-size 7",
        ("another config", "model.belief_size"),
    ),
    "a run folder under a file": (
        "collect --preset debug --task test-reach --run-dir {file}/run",
        ("cannot create run folder", "--run-dir"),
    ),
    "resume with another config": (
        "train --resume --run-dir {ref} --model.belief-size 7",
        ("another config",),
    ),
    "train into an existing run": ("train --preset debug --run-dir {ref}", ("--resume",)),
    "resume nothing": ("train --resume --run-dir {tmp}/none", ("not a run folder",)),
    # reading runs
    "eval a non-run": ("eval --run-dir {tmp}", ("not a run folder",)),
    "eval before training": ("eval --run-dir {collected}", ("no checkpoint yet",)),
    "eval with an impossible planner": (
        "eval --run-dir {ref} --planner.top-k 999",
        ("planner.top-k (999) must be in 1..planner.candidates (16)",),
    ),
    "eval a DDPG run with a planner": (
        "eval --run-dir {ddpg} --planner.horizon 5",
        ("is a ddpg run",),
    ),
    "inspect a DDPG run": ("inspect --run-dir {ddpg}", ("explains PlaNet runs",)),
    "inspect a foreign checkpoint": (
        "inspect --run-dir {ref} --checkpoint {ddpg}/checkpoints/latest.pt",
        ("holds no PlaNet world model",),
    ),
    "inspect a junk checkpoint": (
        "inspect --run-dir {ref} --checkpoint {junk}",
        ("unreadable",),
    ),
    "inspect an open loop past the episode's end": (
        "inspect --run-dir {ref} --open-loop-start 50",
        ("--open-loop-start 50", "choose 0 to"),
    ),
    "plot a metric never logged": (
        "plot {ref} --metric test/nothing -o {tmp}/p.png",
        ("no 'test/",),
    ),
    "plot with an unknown reference": ("plot {tmp} --reference x", ("reference",)),
    # results
    "results of no runs": ("results --csv {tmp}/none.csv --docs", ("holds no runs yet",)),
    "results of a non-run": ("results {tmp} --csv {tmp}/r.csv", ("not a run folder",)),
    "results of an unscored run": (
        "results {collected} --csv {tmp}/r.csv",
        ("no scores.json", "planet eval"),
    ),
    "random policy of an unknown task": (
        "random-policy --tasks cheetah-runn --csv {tmp}/random.csv",
        ("unknown task",),
    ),
    "random policy of 0 episodes": (
        "random-policy --episodes 0 --csv {tmp}/random.csv",
        ("--episodes",),
    ),
    # sweeps
    "sweep seeds that are no numbers": ("sweep --seeds x --sweep-dir {tmp}/s", ("--seeds",)),
    "sweep an unknown variant": ("sweep --variants ppo --sweep-dir {tmp}/s", ("ppo",)),
    "sweep -1 retries": ("sweep --retries -1 --sweep-dir {tmp}/s", ("--retries must be >= 0",)),
    # a head that answers no connection is refused at once (Ray itself retries for minutes)
    "sweep on an unreachable cluster": (
        "sweep --address 127.0.0.1:1 --sweep-dir {tmp}/s",
        ("cannot reach the Ray cluster at 127.0.0.1:1", "ray start"),
    ),
    "sweep on an address without a port": (
        "sweep --address head --sweep-dir {tmp}/s",
        ("host:port",),
    ),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The folders and files the table's commands point at (built once, never written again)."""
    from planet_torch.config import DEBUG, override
    from planet_torch.training.ddpg_loop import DDPGTrainer
    from planet_torch.training.loop import Trainer

    root = tmp_path_factory.mktemp("user-errors")
    planet_run = override(DEBUG, task="test-reach", schedule={"total_updates": 2})
    Trainer(planet_run, root / "planet", progress=False).train()
    ddpg_run = override(DEBUG, algo="ddpg", task="test-reach", schedule={"total_updates": 3})
    DDPGTrainer(ddpg_run, root / "ddpg", progress=False).train()
    collect = ["collect", "--preset", "debug", "--task", "cartpole-balance", "--episodes", "1"]
    collect += ["--test-episodes", "0", "--no-video", "--run-dir", str(root / "collected")]
    assert planet_here(*collect).returncode == 0
    (root / "junk.pt").write_bytes(b"not a checkpoint")
    (root / "a-file").write_text("not a folder")
    damaged = {  # copies of the PlaNet run, one file damaged by hand each
        "badtype": lambda run: _edit_config(run, lambda c: c.update(seed="x")),
        "badrange": lambda run: _edit_config(run, lambda c: c["model"].update(cnn_depth=0)),
        "badscores": lambda run: (run / "scores.json").write_text("garbage"),
        "badmachines": _scored_with_bad_machines,
    }
    for name, damage in damaged.items():
        shutil.copytree(root / "planet", root / name, ignore=shutil.ignore_patterns(".*"))
        damage(root / name)
    return {
        **{name: root / name for name in damaged},
        "root": root,
        "ref": root / "planet",
        "ddpg": root / "ddpg",
        "collected": root / "collected",
        "junk": root / "junk.pt",
        "file": root / "a-file",
    }


def _scored_with_bad_machines(run: Path) -> None:
    from planet_torch.training.evaluate import evaluate

    evaluate(run, episodes=1, video=None)  # results reads only scored runs
    (run / "machines.json").write_text("{}")


def _edit_config(run: Path, edit: Callable[[dict], object]) -> None:
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_errors(case: str, folders: dict[str, Path], tmp_path: Path) -> None:
    if case == "cuda without cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is here: --device cuda is no mistake on this machine")
    template, needles = USER_ERRORS[case]

    def written() -> list[list[Path]]:  # every file and folder the command could touch
        return [sorted(root.rglob("*")) for root in (folders["root"], tmp_path)]

    before = written()
    command = template.format(**folders, tmp=tmp_path).split()
    assert_one_line_error(planet_here(*command), *needles)
    # nothing written: not into the runs, and no new run folder, plot, CSV or lock file
    assert written() == before, case


def test_collect_writes_episodes_and_tops_up(tmp_path):
    run = tmp_path / "run"
    result = planet(
        "collect",
        "--preset",
        "debug",
        "--task",
        "cartpole-balance",
        "--run-dir",
        str(run),
        "--episodes",
        "2",
        "--test-episodes",
        "1",
    )
    assert result.returncode == 0, result.stderr
    train = sorted((run / "train_episodes").glob("*.npz"))
    assert len(train) == 2 and len(list((run / "test_episodes").glob("*.npz"))) == 1
    with np.load(train[0]) as episode:
        assert episode["image"].dtype == np.uint8 and episode["image"].shape[1:] == (64, 64, 3)
        assert (
            episode["image"].shape[0] == 80 // 8 + 1
        )  # debug: 80 env steps at repeat 8 + reset row
    assert (run / "videos" / "random_episode.mp4").stat().st_size > 1000
    assert (run / "config.json").exists()
    # Running again tops up nothing (already complete) and keeps the files.
    again = planet_here(
        "collect",
        "--preset",
        "debug",
        "--task",
        "cartpole-balance",
        "--run-dir",
        str(run),
        "--episodes",
        "2",
        "--test-episodes",
        "1",
    )
    assert again.returncode == 0 and sorted((run / "train_episodes").glob("*.npz")) == train
    # (collecting into it with another config is in USER_ERRORS)


@pytest.mark.timeout(300)
def test_doctor_passes_here(tmp_path):
    result = planet("doctor", "--run-dir", str(tmp_path), "--render-frames", "50")
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("python", "packages", "torch", "precision", "mujoco", "sdl", "disk"):
        assert f"[ok  ] {check}" in result.stdout, result.stdout
    assert "real 64×64 frames" in result.stdout
    assert "the cpu preset's fast MuJoCo renderer" in result.stdout  # the speed a run will see
    assert "--model.compute-dtype auto trains in " in result.stdout
    assert "bf16 convs ran" in result.stdout  # the reason, from the same chooser
    # Kept, or (on a CPU busy with other processes, as beside a training run) used and not kept.
    kept = "measured now, kept in" in result.stdout
    busy = "of the CPUs: not kept" in result.stdout
    assert (kept or busy) and "delete the file" in result.stdout, result.stdout


def test_out_of_memory_is_one_line_error(tmp_path):
    """A batch no machine can hold: numpy's allocation fails, planet says what to lower."""
    run = tmp_path / "run"
    result = planet(
        "train", "--preset", "debug", "--task", "test-reach", "--run-dir", str(run),
        "--data.batch-size", "100000000",
    )  # fmt: skip
    assert_one_line_error(result, "out of memory", "--data.batch-size")
    assert (run / "train_episodes").is_dir()  # the seed episodes before it are kept


def test_closed_pipe_is_quiet():
    """`planet eval --help | head -3`: the reader closes the pipe before planet writes; planet
    stops with the shell's closed-pipe status (141) and no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "planet_torch.cli", "eval", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()  # before the interpreter has imported planet: its first write fails
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == "", stderr


def test_version_names_the_package_and_what_it_runs_on() -> None:
    from importlib import metadata

    import planet_torch

    for flag in ("--version", "-V"):
        result = planet_here(flag)
        assert result.returncode == 0 and result.stderr == "", result
        line = result.stdout.strip()
        assert line.startswith(f"planet-torch {planet_torch.__version__} (Python 3.11"), line
        for name in ("torch", "mujoco", "dm_control", "gymnasium"):
            assert f"{name} {metadata.version(name)}" in line, line
    assert "planet --version" in planet("--help").stdout


def test_resume_without_run_dir_names_the_runs_there_are(tmp_path, monkeypatch) -> None:
    """``planet train --resume`` looks in the folder --task, --preset and --seed name; a user who
    trained another task there is shown the runs in runs/ (it had only said "drop --resume")."""
    from planet_torch.config import DEBUG, override
    from planet_torch.training.run_dir import RunDir

    monkeypatch.chdir(tmp_path)
    assert_one_line_error(
        planet_here("train", "--resume"),
        "nothing to resume in runs/cartpole-balance-cpu-seed0",
        "drop --resume to start it",
    )
    RunDir(tmp_path / "runs" / "cheetah-run-cpu-seed0").prepare(override(DEBUG, task="cheetah-run"))
    (tmp_path / "runs" / "notes").mkdir()  # not a run: not listed
    assert_one_line_error(
        planet_here("train", "--resume"),
        "runs in runs/: cheetah-run-cpu-seed0: add --run-dir runs/NAME",
    )
    assert not (tmp_path / "runs" / "cartpole-balance-cpu-seed0").exists()
