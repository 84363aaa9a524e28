"""The PlaNet schedule end to end on real dm_control cartpole (debug sizes), killed and resumed."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_helpers import (
    assert_one_line_error,
    assert_same_episodes,
    assert_same_run,
    kill_once_written,
    metrics,
    planet,
    planet_here,
    start,
    trained,
    wait_for,
)

from planet_torch.config import DEBUG, override
from planet_torch.errors import UserError
from planet_torch.training import base
from planet_torch.training.base import stop_on_signals
from planet_torch.training.checkpoint import load_checkpoint
from planet_torch.training.logging import read_metrics
from planet_torch.training.loop import Trainer
from planet_torch.training.results import run_rows
from planet_torch.training.run_dir import RunDir

TRAIN = [
    "train",
    "--preset",
    "debug",
    "--task",
    "cartpole-balance",
    "--schedule.total-updates",
    "24",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return trained(tmp_path_factory, "reference", TRAIN)


def test_debug_run_writes_everything(reference):
    cfg = json.loads((reference / "config.json").read_text())
    assert cfg["task"] == "cartpole-balance" and cfg["schedule"]["total_updates"] == 24
    # Seed 2 + one planned episode per 3 updates (8); test: 1 seed + 1 per test phase (4).
    assert len(list((reference / "train_episodes").glob("*.npz"))) == 2 + 24 // 3
    assert len(list((reference / "test_episodes").glob("*.npz"))) == 1 + 24 // 6
    assert (reference / "checkpoints" / "latest.pt").stat().st_size > 10_000
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))
    videos = sorted((reference / "videos").glob("openloop-*.mp4"))
    assert len(videos) == 4 and all(v.stat().st_size > 1000 for v in videos)
    assert (reference / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    records = metrics(reference)
    tests = [r for r in records if "test/return" in r]
    assert [r["updates"] for r in tests] == [6, 12, 18, 24]
    assert all(math.isfinite(r["test/image_nll"]) for r in tests)
    updates = [r["updates"] for r in records if "train/total" in r]
    assert updates == list(range(1, 25))  # debug logs every update: no gaps, no duplicates
    raw = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert all({"env_steps", "updates", "wall_seconds"} <= r.keys() for r in raw)


# The same debug run of each algorithm, as the CLI starts it, and the episode files after which
# a kill lands mid-run: PlaNet's 7th (update 15: after the checkpoint at 12; unused since the
# kill test of PlaNet waits for a periodic checkpoint instead), DDPG's 5th
# (update 20: after the checkpoint at 18); SIGINT after PlaNet's 5th and DDPG's 4th.
DDPG_TRAIN = [
    "train",
    "--algo",
    "ddpg",
    "--preset",
    "debug",
    "--task",
    "test-reach",
    "--ddpg.hidden-units",
    "32",
    "--ddpg.batch-size",
    "16",
    "--ddpg.updates-per-policy-step",
    "0.25",
    "--schedule.total-updates",
    "24",
]
RESUME_CASES = {
    "planet": (TRAIN, "reference", "000006-len10.npz", "000004-len10.npz"),
    "ddpg": (DDPG_TRAIN, "ddpg_reference", "000004-len40.npz", "000003-len40.npz"),
}


@pytest.fixture(scope="module")
def ddpg_reference(tmp_path_factory) -> Path:
    return trained(tmp_path_factory, "ddpg-reference", DDPG_TRAIN)


@pytest.mark.parametrize("algo", ["ddpg"])  # PlaNet's: the periodic-checkpoint test below
def test_kill_9_then_resume_continues_exactly(algo, request, tmp_path):
    args, reference, kill_after, _ = RESUME_CASES[algo]
    run = tmp_path / "killed"
    kill_once_written(args, run, kill_after)
    from planet_torch.training.checkpoint import load_checkpoint

    killed_at = load_checkpoint(run / "checkpoints" / "latest.pt")["counters"]["updates"]
    assert 0 < killed_at < 24  # the kill landed mid-run, after a checkpoint
    resumed = planet_here("train", "--resume", "--run-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(request.getfixturevalue(reference), run)


HANGUP_SCRIPT = """
import os, signal, sys, time
from planet_torch.training.base import stop_on_signals
class Run:
    stop_requested = False
run = Run()
with stop_on_signals(run):
    print("before", flush=True)
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.2)
    print("after: the terminal is gone", flush=True)  # would fail on a hung-up terminal
    print("stderr too", file=sys.stderr, flush=True)
    open(sys.argv[1], "w").write(str(run.stop_requested))
"""


def test_a_closed_ssh_session_stops_the_run_with_a_checkpoint(tmp_path):
    """SIGHUP (the shell of an SSH session that started the run closed) asks the run to stop
    as Ctrl-C does (checkpoint, then exit: tested above), with its output sent to /dev/null
    first; under ``nohup`` (SIGHUP ignored) it is left ignored and the run goes on."""
    marker = tmp_path / "stop_requested"
    result = subprocess.run(
        [sys.executable, "-c", HANGUP_SCRIPT, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )
    assert result.returncode == 0, result.stderr  # not killed by the hangup
    assert marker.read_text() == "True"
    assert "before" in result.stdout and "after" not in result.stdout
    assert "stderr too" not in result.stderr
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a process
    try:
        with stop_on_signals(type("Run", (), {"stop_requested": False})()):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with stop_on_signals(type("Run", (), {"stop_requested": False})()):
            assert callable(signal.getsignal(signal.SIGHUP))  # the stop handler
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_kill_9_after_a_periodic_checkpoint_resumes_exactly(reference, tmp_path):
    """``--schedule.checkpoint-every-minutes 0``: a checkpoint after every collected train
    episode, not only at test phases; a kill -9 after one between two test phases resumes from
    it and ends as the reference run (which had none: where checkpoints fall changes nothing)."""
    tests = {r["updates"] for r in metrics(reference) if "test/return" in r}
    between = [r for r in metrics(reference) if "train/return" in r and r["updates"] not in tests][
        1
    ]  # a train episode between two test phases
    name = sorted((reference / "train_episodes").iterdir())[int(between["train/episodes"]) - 1]
    run = tmp_path / "killed"
    # niced: this test's polling wins the CPU, so the kill lands before the run's next save
    # (3 updates later) even on a busy machine
    every = ["--schedule.checkpoint-every-minutes", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "planet_torch.cli", *TRAIN, *every, "--run-dir", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.nice(15),
    )
    episode, checkpoint = run / "train_episodes" / name.name, run / "checkpoints" / "latest.pt"

    def saved_after_episode() -> bool:  # the checkpoint written after that episode's file
        return (
            episode.exists()
            and checkpoint.exists()
            and (checkpoint.stat().st_mtime_ns >= episode.stat().st_mtime_ns)
        )

    alive = wait_for(saved_after_episode, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert alive, process.stderr.read() if process.stderr else ""
    from planet_torch.training.checkpoint import load_checkpoint

    counters = load_checkpoint(checkpoint)["counters"]
    assert counters["updates"] == between["updates"] and counters["updates"] not in tests
    plan = planet_here("train", "--resume", "--run-dir", str(run), "--dry-run")
    left = 24 - counters["updates"]
    assert f"resumes at update {counters['updates']} from its checkpoint" in plan.stdout
    assert f"{left} updates left" in plan.stdout, plan.stdout
    resumed = planet_here("train", "--resume", "--run-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, run)


def test_one_writer_per_run_folder(tmp_path):
    """A second writer on a live run (train --resume, a new train, collect, a sweep trial) refuses
    in one line naming the holder's PID and never touches the folder; readers (plot, eval,
    inspect) work on the live run; the holder's kill -9 leaves no stale lock (nor temp file):
    --resume then continues it."""
    run = tmp_path / "live"
    holder = start(*TRAIN, "--schedule.total-updates", "100000", "--run-dir", str(run))
    try:
        assert wait_for(lambda: (run / "train_episodes" / "000004-len10.npz").exists(), holder)
        before = sorted(p.name for p in (run / "train_episodes").iterdir())
        config_bytes = (run / "config.json").read_bytes()  # the refusals rewrite nothing
        live = f"is being written by PID {holder.pid} on "
        # every refusal below goes through `main` in this process: a second process beside the
        # holder, as a user's second terminal
        resume = planet_here("train", "--resume", "--run-dir", str(run))
        assert_one_line_error(resume, live, "planet train", "then --resume")
        # the same refusal for a new train and a collect
        assert_one_line_error(planet_here(*TRAIN, "--run-dir", str(run)), live)
        collect = ["collect", "--preset", "debug", "--task", "cartpole-balance"]
        assert_one_line_error(planet_here(*collect, "--run-dir", str(run)), live)
        # a sweep trial on the live folder (what a Ray worker runs) refuses the same way
        from planet_torch.sweep import run_trial

        trial_config = json.loads((run / "config.json").read_text())
        with pytest.raises(UserError, match=live):
            run_trial(
                trial_config, str(run), str(tmp_path / "trial.log"), threads=torch.get_num_threads()
            )
        assert not (run / "videos" / "random_episode.mp4").exists()
        assert (run / "config.json").read_bytes() == config_bytes
        written = {p.name for p in (run / "train_episodes").iterdir()}
        assert set(before) <= written  # only the holder's own new episodes, in order
        assert sorted(written) == [f"{i:06d}-len10.npz" for i in range(len(written))]
        # readers work on the live run (once a checkpoint exists): plot, eval, inspect. The
        # holder is paused meanwhile (SIGSTOP: it keeps its lock and may stop mid-write), so
        # that its training does not take a core from the readers; resumed, it must go on.
        assert wait_for(lambda: (run / "checkpoints" / "latest.pt").exists(), holder)
        holder.send_signal(signal.SIGSTOP)
        plot = planet_here("plot", str(run), "-o", str(tmp_path / "live.png"))
        assert plot.returncode == 0, plot.stderr
        # in this process, the functions `planet eval` and `planet inspect` call
        from planet_torch.training.evaluate import evaluate
        from planet_torch.training.inspection import inspect_run

        assert math.isfinite(evaluate(run, episodes=1, video=None)["mean"])
        report = inspect_run(
            run, output=tmp_path / "inspect", horizon=4, planner_steps=(0,), sim_candidates=8
        )
        assert report.exists() and (report.parent / "planner_0000.png").exists()
        paused_at = len(list((run / "train_episodes").glob("*.npz")))
        holder.send_signal(signal.SIGCONT)
        after = run / "train_episodes" / f"{paused_at:06d}-len10.npz"
        assert wait_for(after.exists, holder)  # the first run was never disturbed: it goes on
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # what a kill -9 mid-save leaves (the dead holder's temp file) goes at the next writer's
    # start; a temp file of a live process (PID 1) is never touched
    dead = run / "train_episodes" / f".000099-len10.npz.{holder.pid}.tmp"
    alive = run / "checkpoints" / ".latest.pt.1.tmp"
    for tmp in (dead, alive):
        tmp.write_bytes(b"half a file")
    resumed = planet_here(
        "train", "--resume", "--run-dir", str(run), "--schedule.total-updates", "3"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not dead.exists() and alive.exists()


@pytest.mark.parametrize("algo", list(RESUME_CASES))
def test_sigint_checkpoints_then_resume_continues_exactly(algo, request, tmp_path):
    args, reference, _, stop_after = RESUME_CASES[algo]
    run = tmp_path / "interrupted"
    process = start(*args, "--run-dir", str(run))
    wait_for(lambda: (run / "train_episodes" / stop_after).exists(), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "checkpoint saved" in out and "--resume" in out
    stopped_at = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["updates"]
    assert stopped_at < 24, "the signal landed after the run's end"
    resumed = planet_here("train", "--resume", "--run-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(request.getfixturevalue(reference), run)


def test_eval_and_plot_on_a_run(reference, tmp_path):
    result = planet_here("eval", "--run-dir", str(reference), "--episodes", "2")
    assert result.returncode == 0, result.stderr
    scores = json.loads((reference / "scores.json").read_text())
    assert len(scores["returns"]) == 2 and scores["updates"] == 24 and "planner" not in scores
    assert Path(scores["video"]).stat().st_size > 1000
    assert run_rows(reference)[0]["command"].endswith("--seed 0 --schedule.total-updates 24")
    # other planner settings for the eval only: kept in scores.json and in the row's command
    # (a test-only one in the training command: test settings never train, tested below)
    changed = ["--planner.test-imagination", "mean", "--planner.candidates", "8"]
    result = planet_here("eval", "--run-dir", str(reference), "--episodes", "1", *changed)
    assert result.returncode == 0, result.stderr
    scores = json.loads((reference / "scores.json").read_text())
    assert scores["planner"] == {"test_imagination": "mean", "candidates": 8}
    assert json.loads((reference / "config.json").read_text())["planner"]["candidates"] == 16
    train, _, then = run_rows(reference)[0]["command"].partition(", then ")
    assert train.endswith("--seed 0 --planner.test-imagination mean --schedule.total-updates 24")
    assert then == "planet eval --episodes 1 --planner.candidates 8"
    out = tmp_path / "curves.png"
    result = planet_here("plot", str(reference), str(reference), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    # a misspelt --metric names the close logged ones (it had said "train first")
    typo = planet_here("plot", str(reference), "--metric", "test/retrun", "-o", str(out))
    assert_one_line_error(typo, "no 'test/retrun' values", "did you mean test/return")
    # mid-run, before the first test phase: when it comes, not other metrics to try
    early = tmp_path / "early"
    early.mkdir()
    shutil.copy(reference / "config.json", early)
    metrics = (reference / "metrics.jsonl").read_text().splitlines()
    before = [r for r in map(json.loads, metrics) if not any(k.startswith("test/") for k in r)]
    before = [r for r in before if r["updates"] < 12]
    (early / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in before))
    every, done = RunDir(early).load_config().updates_per_test_phase, before[-1]["updates"]
    result = planet_here("plot", str(early), "-o", str(out))
    assert_one_line_error(
        result, "no test phase has ended yet", f"at update {every} of {early}, {done} done"
    )


def test_eval_with_workers_plans_for_all_envs_at_once(reference):
    result = planet("eval", "--run-dir", str(reference), "--episodes", "3", "--workers", "2")
    assert result.returncode == 0, result.stderr
    scores = json.loads((reference / "scores.json").read_text())
    # The path runs end to end; what batching computes is tested where it is built:
    # test_planning.py (one CEM call plans for a batch of envs, each belief its own env's) and
    # test_vector.py (worker envs play the episodes single envs play for the same seeds).
    assert len(scores["returns"]) == 3 and all(math.isfinite(r) for r in scores["returns"])
    assert result.stdout.count("eval episode") == 3


def test_inspect_writes_a_report_of_real_figures(reference, tmp_path):
    out = tmp_path / "inspect"
    args = ["--horizon", "4", "--planner-steps", "0", "3", "--sim-candidates", "8"]
    result = planet_here("inspect", "--run-dir", str(reference), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    report = (out / "report.html").read_text()
    images = re.findall(r"<img src='([^']+)'", report)
    expected = {
        "open_loop.png",
        "rewards.png",
        "reward_drift.png",
        "latent.png",
        "planner_0000.png",
        "planner_0003.png",
    }
    assert set(images) == expected
    from matplotlib.image import imread

    for name in images:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert imread(out / name).std() > 0.02, f"{name} is blank"
    numbers = json.loads(report.split("<pre>")[1].split("</pre>")[0].replace("&quot;", '"'))
    assert len(numbers["state_r2"]) == 5 and len(numbers["kl_per_dim"]) == 4  # cartpole, debug
    assert len(numbers["reward_drift_mae"]) == 4  # --horizon 4 decisions imagined
    assert "true-simulator planner" in report  # cartpole is a dm_control task: shown beside
    # the random-action ablation (planner.iterations 0) has no search to draw (had crashed)
    random_run = tmp_path / "random"
    shutil.copytree(reference, random_run, ignore=shutil.ignore_patterns(".*"))
    config = json.loads((random_run / "config.json").read_text())
    config["planner"]["iterations"] = 0
    (random_run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "inspect-random"
    result = planet_here("inspect", "--run-dir", str(random_run), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert "planner_0000.png" not in (out / "report.html").read_text()
    assert "no search to show" in json.loads((out / "numbers.json").read_text())["planner"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = override(
        DEBUG, task="test-reach", schedule={"total_updates": 12, "test_every_updates": 4}
    )
    trainer = Trainer(cfg, tmp_path / "nan", progress=False)
    update = trainer.optimizer.update
    calls = {"n": 0}

    def failing(batch, generator=None):
        calls["n"] += 1
        metrics = update(batch, generator)
        if calls["n"] == 6:
            metrics["total"] = math.nan
        return metrics

    trainer.optimizer.update = failing  # type: ignore[method-assign]
    with pytest.raises(UserError, match="loss became non-finite"):
        trainer.train()
    from planet_torch.training.checkpoint import load_checkpoint

    saved = load_checkpoint(tmp_path / "nan" / "checkpoints" / "latest.pt")
    assert saved["counters"]["updates"] == 4
    assert os.path.getsize(tmp_path / "nan" / "metrics.jsonl") > 0


def test_auto_precision_keeps_its_first_choice_on_resume(tmp_path, monkeypatch, capsys):
    """``model.compute_dtype auto`` measures once per machine and keeps the ratio: a second
    fresh run with the same seed trains in the same precision even where a new timing would
    choose the other one; a run stopped mid-way and resumed where the kept ratio is gone (the
    measurement now choosing float32) keeps the dtype it started with and ends exactly as the
    uninterrupted run."""
    import torch

    from planet_torch.models import precision

    cfg = override(
        DEBUG,
        task="cartpole-balance",
        model={"compute_dtype": "auto"},
        schedule={"total_updates": 9, "collect_every_updates": 3, "test_every_updates": 6},
    )
    monkeypatch.setattr(precision, "conv_bf16_speedup", lambda *_: 1.5)
    after_update = Trainer._after_update

    def stop_at_4(self, *args, **kwargs):  # as Ctrl-C after update 4: checkpoint, then return
        after_update(self, *args, **kwargs)
        self.stop_requested = self.stop_requested or self.counters.updates == 4

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_after_update", stop_at_4)
        first = Trainer(cfg, tmp_path / "run", progress=False)
        assert first.train()["updates"] == 4
    assert first.model.compute_dtype == torch.bfloat16
    assert "encoder/decoder in bfloat16 (auto: bf16 convs ran 1.50×" in capsys.readouterr().out
    monkeypatch.setattr(precision, "conv_bf16_speedup", lambda *_: 1.0)  # now measures slower
    fresh = Trainer(cfg, tmp_path / "other", progress=False)  # a new run reads the kept ratio
    assert fresh.model.compute_dtype == torch.bfloat16
    fresh.train()  # 9 updates in one go
    precision.precision_file().unlink()  # the kept ratio gone: the next process measures 1.0
    resumed = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert resumed.model.compute_dtype == torch.bfloat16
    assert "encoder/decoder in bfloat16, as when this run started" in capsys.readouterr().out
    resumed.train()
    run, other = metrics(tmp_path / "run"), metrics(tmp_path / "other")
    assert any("train/total" in m and m["updates"] > 4 for m in run)  # it did go on
    assert run == other  # resumed in bf16 = uninterrupted, number for number


def test_plan_counts_test_phases_exactly():
    every = override(DEBUG, schedule={"test_every_updates": 6, "test_episodes": 2})
    for total, phases in ((12, 2), (13, 3), (0, 1), (5, 1)):
        cfg = override(every, schedule={"total_updates": total})
        assert Trainer.plan(cfg).test_episodes == 2 * phases, total


def test_test_phases_use_planner_test_noise(tmp_path, monkeypatch):
    """Test episodes play as ``planet eval`` does: with ``planner.test_noise`` (0 by default, as
    the original), not a hard-coded 0; collection keeps ``planner.train_noise``."""
    cfg = override(
        DEBUG,
        task="cartpole-balance",
        planner={"train_noise": 0.3, "test_noise": 0.2},
        schedule={"total_updates": 6},
    )
    seen: list[tuple[float, bool]] = []
    make_agent = Trainer._make_agent

    def recording(self, seed, noise, test=False):
        seen.append((noise, test))
        return make_agent(self, seed, noise, test)

    monkeypatch.setattr(Trainer, "_make_agent", recording)
    Trainer(cfg, tmp_path / "run", progress=False).train()
    assert {noise for noise, test in seen if test} == {0.2}
    assert {noise for noise, test in seen if not test} == {0.3}


def test_test_episodes_never_train(tmp_path):
    """How test episodes are planned (imagination, noise) changes nothing a run learns: the
    same train episodes, losses and weights. So a run can be re-scored with other test
    settings (``planet eval --planner.*``) and stand for a run trained with them."""
    runs = []
    for name, planner in [("a", {}), ("b", {"test_imagination": "mean", "test_noise": 0.3})]:
        cfg = override(DEBUG, task="cartpole-balance", planner=planner)
        Trainer(cfg, tmp_path / name, progress=False).train()
        runs.append(tmp_path / name)
    test_returns = [[r["test/return"] for r in metrics(run) if "test/return" in r] for run in runs]
    assert test_returns[0] != test_returns[1]  # the test episodes did play differently
    train = [
        [{k: v for k, v in r.items() if not k.startswith("test/")} for r in metrics(run)]
        for run in runs
    ]
    assert train[0] == train[1]
    assert_same_episodes(runs[0], runs[1], "train_episodes")
    model = [
        load_checkpoint(run / "checkpoints" / "latest.pt")[Trainer.learner_key]["model"]
        for run in runs
    ]
    assert all(torch.equal(model[0][k], model[1][k]) for k in model[0])


def test_cost_line_does_not_time_the_warm_up_update(tmp_path, capsys, monkeypatch):
    """The first update of a process is warm-up (4.5 s against 0.30 s later on a 2-core CPU):
    timed, it made the cost line project a 40-minute run as 6 hours. Other processes on the
    CPUs get a warning line (here made to look crowded) and each test phase logs their share.
    The memory line projects the episodes held in RAM at the end, and warns where they would
    not fit (here made to look nearly full)."""
    monkeypatch.setattr(base, "crowded", lambda others: True)
    monkeypatch.setattr(base, "available_memory_gib", lambda: 0.001)  # 1 MiB
    cfg = override(DEBUG, task="test-reach", schedule={"total_updates": 8, "test_every_updates": 4})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    update = trainer.optimizer.update
    calls = {"n": 0}

    def slow_first(batch, generator=None):
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(3.0)
        return update(batch, generator)

    trainer.optimizer.update = slow_first  # type: ignore[method-assign]
    trainer.train()
    out = capsys.readouterr().out.splitlines()
    line = next(x for x in out if x.startswith("cost:"))
    seconds = float(re.search(r"([0-9.]+) s/update", line).group(1))  # type: ignore[union-attr]
    assert seconds < 1.0, line
    assert any(x.startswith("cost: other processes used") for x in out), out
    memory = next(x for x in out if x.startswith("memory: episodes in RAM"))
    at_end = float(re.search(r"now, ([0-9.]+) MiB at the end", memory).group(1))  # type: ignore[union-attr]
    held = sum(store.nbytes for store in (trainer.train_store, trainer.test_store)) / 2**20
    assert at_end == pytest.approx(held, abs=0.06), (memory, held)  # all episodes 10 steps long
    assert "; 0.0 GiB available" in memory
    assert any(x.startswith("memory: warning: the ") for x in out), out
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")  # metrics() drops machine/ keys
    tests = [m for m in records if "test/return" in m]
    assert tests and all("machine/others_cpus" in m for m in tests), tests
