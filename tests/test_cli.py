"""The `planet` command as a user types it: real subprocesses, real files, one-line errors."""

import subprocess

import numpy as np
import pytest
from run_helpers import planet


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("planet: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_task_lists_valid_tasks(tmp_path):
    result = planet("collect", "--task", "cartpole-swingupp", "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown task", "cartpole-swingup", "cheetah-run")


def test_bad_preset_and_bad_field_value(tmp_path):
    assert_one_line_error(planet("collect", "--preset", "fast"), "fast", "paper")
    assert_one_line_error(planet("collect", "--model.belief-size", "abc"), "belief-size")
    assert_one_line_error(planet("collect", "--planner.top-k", "0"), "top-k")


def test_collect_episode_counts_below_one_are_one_line_errors(tmp_path):
    for flags in (("--episodes", "-3"), ("--episodes", "0"), ("--test-episodes", "-1")):
        result = planet("collect", *flags, "--run-dir", str(tmp_path / "r"))
        assert_one_line_error(result, "--episodes must be >= 1")


def test_results_and_random_policy_bad_input(tmp_path):
    empty = planet("results", "--csv", str(tmp_path / "none.csv"), "--docs")
    assert_one_line_error(empty, "holds no runs yet")
    unscored = planet("results", str(tmp_path), "--csv", str(tmp_path / "r.csv"))
    assert_one_line_error(unscored, "not a run folder")
    from planet_torch.config import DEBUG
    from planet_torch.training.run_dir import RunDir

    RunDir(tmp_path / "run").prepare(DEBUG)
    unfinished = planet("results", str(tmp_path / "run"), "--csv", str(tmp_path / "r.csv"))
    assert_one_line_error(unfinished, "no scores.json", "planet eval")
    assert_one_line_error(planet("random-policy", "--tasks", "cheetah-runn"), "unknown task")
    assert_one_line_error(planet("random-policy", "--episodes", "0"), "--episodes")
    assert_one_line_error(planet("plot", str(tmp_path), "--reference", "x"), "reference")


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = planet(
        "collect", "--preset", "debug", "--task", "test-reach", "--run-dir", str(blocker / "run")
    )
    assert_one_line_error(result, "cannot create run folder", "--run-dir")


def test_collect_writes_episodes_and_refuses_other_config(tmp_path):
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
    again = planet(
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
    other = planet(
        "collect",
        "--preset",
        "debug",
        "--task",
        "cartpole-balance",
        "--run-dir",
        str(run),
        "--model.belief-size",
        "7",
    )
    assert_one_line_error(other, "another config", "model.belief_size")


@pytest.mark.timeout(300)
def test_doctor_passes_here(tmp_path):
    result = planet("doctor", "--run-dir", str(tmp_path), "--render-frames", "50")
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("python", "packages", "torch", "precision", "mujoco", "sdl", "disk"):
        assert f"[ok  ] {check}" in result.stdout, result.stdout
    assert "real 64×64 frames" in result.stdout
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
