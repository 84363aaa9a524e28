"""`planet sweep` on a real local Ray cluster: trials, skip on re-run, a failing trial reported."""

import json
import re
from pathlib import Path

import pytest
from run_helpers import assert_one_line_error, planet, planet_here

from planet_torch.config import DEBUG, override
from planet_torch.errors import UserError
from planet_torch.sweep import parse_seeds, plan_trials
from planet_torch.training.run_dir import RunDir


def test_seeds_and_variants_become_configs() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    for bad in ("", "a-b", "1,1", "-3"):
        with pytest.raises(UserError):
            parse_seeds(bad)
    trials = plan_trials(
        DEBUG, "cartpole-balance,cheetah-run", "0-1", "planet,ssm,deterministic,random"
    )
    assert len(trials) == 16 and len({t.name for t in trials}) == 16
    assert {t.config.variant for t in trials} == {"planet", "ssm", "deterministic", "random"}
    assert all(t.config.variant == t.variant for t in trials)  # one name for a variant
    det = next(t for t in trials if t.variant == "deterministic").config
    assert det.model.mean_only and det.loss.kl_scale == 0.0
    rnd = next(t for t in trials if t.variant == "random").config
    assert rnd.planner.iterations == 0 and rnd.planner.train_noise == 1.0
    assert {(t.task, t.seed) for t in trials} == {
        (task, seed) for task in ("cartpole-balance", "cheetah-run") for seed in (0, 1)
    }
    dreamer, ddpg = plan_trials(DEBUG, "cartpole-balance", "0", "dreamer,ddpg")
    assert dreamer.config.algo == dreamer.config.variant == "dreamer"
    assert ddpg.config.algo == "ddpg" and ddpg.name == "cartpole-balance-ddpg-seed0"
    assert ddpg.variant == "ddpg-state"  # as the summary plot labels it
    # flags that would make a trial another variant than its name says are refused
    for flags, variants, needle in [
        (
            {"algo": "ddpg"},
            "planet,ssm",
            "--variants planet: with --algo ddpg its trials would run the ddpg",
        ),
        (
            {"model": {"kind": "ssm"}},
            "planet",
            "with --model.kind ssm its trials would run the ssm",
        ),
        (
            {"planner": {"iterations": 0}},
            "ssm",
            "with --planner.iterations 0 its trials would run the random",
        ),
    ]:
        with pytest.raises(UserError, match=re.escape(needle)):
            plan_trials(override(DEBUG, **flags), "cartpole-balance", "0", variants)
    (pixels,) = plan_trials(
        override(DEBUG, ddpg={"obs": "pixels"}), "cartpole-balance", "0", "ddpg"
    )
    assert pixels.config.variant == "ddpg-pixels"
    with pytest.raises(UserError, match="unknown variant"):
        plan_trials(DEBUG, "cartpole-balance", "0", "planet,ppo")
    with pytest.raises(UserError, match="unknown task"):
        plan_trials(DEBUG, "cartpole-balanse", "0", "planet")


def _sweep(sweep: Path, seeds: str) -> tuple[int, str, dict]:
    result = planet(
        "sweep",
        "--preset",
        "debug",
        "--tasks",
        "cartpole-balance",
        "--seeds",
        seeds,
        "--sweep-dir",
        str(sweep),
        "--num-cpus",
        "2",
        "--retries",
        "1",
        # an env-step budget: 2 seed episodes + 3 planned of 80 env steps, 9 updates, scored
        "--schedule.max-env-steps",
        "400",
        "--schedule.total-updates",
        "1000",
        cwd=sweep.parent,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    return result.returncode, result.stdout + result.stderr, summary


def test_sweep_runs_trials_skips_finished_ones_and_reports_a_failed_one(tmp_path: Path) -> None:
    """One Ray session (the expensive part): seed 0 trains; seed 2's folder holds a run of
    another config, so that trial fails twice (one retry) and is reported while the other
    finishes. Re-running the sweep skips the finished trial without starting Ray again."""
    sweep = tmp_path / "sweep"
    other = override(DEBUG, task="cartpole-balance", seed=2, model={"belief_size": 8})
    RunDir(sweep / "trials" / "cartpole-balance-planet-seed2").prepare(other)
    outside = [Path.home() / ".ray", Path("/tmp/ray")]
    existed = [p.exists() for p in outside]
    code, out, summary = _sweep(sweep, "0,2")
    for path, was_there in zip(outside, existed, strict=True):
        assert was_there or not path.exists(), f"Ray wrote {path}"
    # ... and where it wrote instead: its session files and auth token in the sweep folder
    assert list((sweep / "ray").glob("session_*")), sorted((sweep / "ray").iterdir())
    assert (sweep / "ray" / "auth_token").is_file()
    links = [
        p for p in Path("/tmp").glob("planet-ray-*") if str(p.readlink()).startswith(str(sweep))
    ]
    assert not links, "the short link to the socket folder is removed at the end"
    assert code == 1, out
    assert "1 of 2 trials failed" in out
    rows = {r["trial"]: r for r in summary["trials"]}
    failed = rows.pop("cartpole-balance-planet-seed2")
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert "config" in failed["error"] and "\n" not in failed["error"]
    assert set(rows) == {"cartpole-balance-planet-seed0"}
    for name, row in rows.items():
        assert row["status"] == "done" and (row["updates"], row["env_steps"]) == (9, 400)
        scores = json.loads((sweep / "trials" / name / "scores.json").read_text())
        assert row["score"] == scores["mean"] and scores["episodes"] == 2
        run = RunDir(sweep / "trials" / name)
        assert run.load_config().seed == int(name[-1])
        assert len(list(run.train_episodes.glob("*.npz"))) > DEBUG.schedule.seed_episodes
        assert (run.checkpoints / "latest.pt").exists()
        assert "summary:" in (sweep / "logs" / f"{name}.log").read_text()
    assert (sweep / "summary.png").stat().st_size > 5000
    table = (sweep / "summary.md").read_text()
    (score,) = (r["score"] for r in rows.values())
    assert f"| cartpole-balance | planet | 1 | {score:.1f} " in table
    assert list((sweep / "ray").glob("session_*/logs")), "Ray's files belong in the sweep folder"
    assert oct((sweep / "ray" / "auth_token").stat().st_mode)[-3:] == "600"
    checkpoint = sweep / "trials" / "cartpole-balance-planet-seed0" / "checkpoints" / "latest.pt"
    mtime = checkpoint.stat().st_mtime_ns
    sessions = sorted((sweep / "ray").glob("session_*"))

    code, out, summary = _sweep(sweep, "0")
    assert code == 0, out
    assert "skip  cartpole-balance-planet-seed0" in out
    assert checkpoint.stat().st_mtime_ns == mtime  # not trained again
    assert sorted((sweep / "ray").glob("session_*")) == sessions  # no Ray started for nothing
    assert {r["status"] for r in summary["trials"]} == {"done"}


def test_a_retried_trial_resumes_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A trial whose worker raised mid-run is run again by ``run_trial`` (what the sweep's
    retry submits): it resumes the checkpoint its first attempt left, reaching the same end as a
    trial that never failed; the log shows both attempts."""
    from run_helpers import assert_same_run

    from planet_torch.sweep import run_trial
    from planet_torch.training.loop import Trainer

    cfg = override(
        DEBUG, task="cartpole-balance", schedule={"max_env_steps": 500, "total_updates": 1000}
    )
    whole, retried = tmp_path / "whole", tmp_path / "retried"
    run_trial(cfg.to_dict(), str(whole), str(tmp_path / "whole.log"), 1)
    update = Trainer._update

    def dies_at_update_9(self: Trainer) -> None:
        if self.counters.updates == 9:  # after the checkpoint of the test phase at 6
            raise RuntimeError("worker lost")
        update(self)

    monkeypatch.setattr(Trainer, "_update", dies_at_update_9)
    log = tmp_path / "retried.log"
    with pytest.raises(RuntimeError, match="worker lost"):
        run_trial(cfg.to_dict(), str(retried), str(log), 1)
    monkeypatch.setattr(Trainer, "_update", update)
    summary = run_trial(cfg.to_dict(), str(retried), str(log), 1)
    assert summary["updates"] == 15
    assert log.read_text().count("--- ") == 2  # one header per attempt
    machines = json.loads((retried / "machines.json").read_text())
    assert [m["from_updates"] for m in machines] == [0, 6]  # resumed at the checkpoint of 6
    assert_same_run(whole, retried)


def test_dry_run_lists_trials_checks_envs_and_writes_nothing(tmp_path: Path) -> None:
    """``planet sweep --dry-run``: every trial's updates and env steps and what a run would do
    with it (run, resume, skip), each task's env built once; no folder, no Ray."""
    from planet_torch.sweep import Sweep, SweepOptions
    from planet_torch.training.loop import Trainer
    from planet_torch.training.runs import train_env_steps

    sweep_dir = tmp_path / "sweep"
    trials = plan_trials(DEBUG, "cartpole-balance,test-reach", "0-1", "planet")
    runner = Sweep(sweep_dir, trials, SweepOptions())
    done, started = trials[1], trials[2]
    (sweep_dir / "trials").mkdir(parents=True)
    recorded = done.config.to_dict()
    del recorded["schedule"]["checkpoint_every_minutes"]  # recorded before the field existed
    record = {"status": "done", "config": recorded}
    runner.outcome_path(done).write_text(json.dumps(record))
    RunDir(runner.run_dir(started)).prepare(started.config)  # a run that was stopped
    text = runner.describe()
    cfg = trials[0].config
    plan = Trainer.plan(cfg)
    updates, env_steps = plan.updates, train_env_steps(cfg, plan)
    assert f"{trials[0].name}: {updates} updates, {env_steps} train env steps" in text
    statuses = re.findall(r" -- (.+)", text)
    assert statuses == ["runs", "finished: skipped", "resumes from its checkpoint", "runs"]
    assert f"envs built and checked: cartpole-balance, test-reach; {3 * updates} updates" in text
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == sorted(
        [f"{done.name}.json", started.name]
    )  # nothing more written
    for dry in (["--dry-run"], []):  # a real sweep checks its tasks before it starts Ray
        tasks = "cartpole-balance,dmc:cartpole-swing"
        typo = planet_here("sweep", "--tasks", tasks, "--sweep-dir", str(tmp_path / "t"), *dry)
        assert_one_line_error(typo, "did you mean dmc:cartpole-swingup")
        assert not (tmp_path / "t").exists()
