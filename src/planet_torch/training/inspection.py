"""``planet inspect``: what a trained PlaNet model knows and how its planner decides.

From a run folder's checkpoint, writes a folder of figures and one ``report.html`` showing them:

1. ``open_loop.png`` — a test episode: 5 context frames (from its first step, or from
   ``--open-loop-start``), then the model's open-loop imagination beside the truth per horizon
   step, and the per-step image error; with the reconstruction error of the whole episode
   filtered, so that a start on rare frames (an episode's first steps) is not mistaken for a
   model that cannot see.
2. ``rewards.png`` — predicted vs true reward along that episode, closed loop (filtering every
   frame) and open loop (imagined from the same context with the executed actions);
   ``reward_drift.png`` — how far ahead the imagined reward can be trusted: its error k
   decisions after the last filtered frame, averaged over starts all along the episode, beside
   the filtered error, a constant guess's error, and the planner's horizon.
3. ``latent.png`` — what the latent knows: R² of a ridge probe from the features to each
   dimension of the simulator state (fit on train episodes, scored on the test episode), and the
   KL(posterior ‖ prior) per latent dimension (which dimensions are used).
4. ``planner_<step>.png`` — at a few steps of a fresh noise-free episode: the distribution of
   candidate returns per CEM iteration, the elite mean and std of the first action per
   iteration, the executed action, and (dm_control tasks) the choice of the true-simulator
   planner at the same physics state.
   For a Dreamer run instead, ``values.png``: along the test episode, the value network's
   estimate and the actor's imagined return from each filtered state beside the real
   discounted return from that step.

Everything is computed here from the checkpoint and the run's episodes; nothing is hard-coded.
The numbers of the report are also written to ``numbers.json``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_torch.agents.planet import PlanetAgent
from planet_torch.agents.true_sim import TrueSimulatorAgent
from planet_torch.config import Config, PlannerConfig
from planet_torch.envs import make_env
from planet_torch.envs.dmc import DmcEnv
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write, atomic_write_text, writable_folder
from planet_torch.models import State, WorldModel, postprocess
from planet_torch.models.latent import kl_normal_per_dim
from planet_torch.planning.cem import CEMIteration
from planet_torch.replay import EpisodeDir
from planet_torch.replay.episodes import Episode
from planet_torch.training.base import counter_generator, resolve_device
from planet_torch.training.checkpoint import load_checkpoint
from planet_torch.training.collect import episode_seed
from planet_torch.training.loop import Trainer, trained_world_model
from planet_torch.training.run_dir import RunDir

CONTEXT = 5
"""Context frames before open-loop imagination (the original's open-loop summaries)."""


@dataclass
class Report:
    """Figures and numbers of one inspection, turned into report.html at the end."""

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (heading, image, text)
    numbers: dict[str, Any] = field(default_factory=dict)

    def add(self, heading: str, image: Path, text: str) -> None:
        self.sections.append((heading, image.name, text))


def _load(run_dir: Path, checkpoint: Path | None, device: torch.device) -> tuple[Config, Any, Any]:
    run = RunDir(run_dir)
    cfg = run.load_config()
    if cfg.algo not in ("planet", "dreamer"):
        raise UserError(f"planet inspect explains PlaNet runs; {run.path} was trained with DDPG")
    path = checkpoint if checkpoint is not None else run.latest_checkpoint()
    if not path.exists():
        raise UserError(f"no checkpoint at {path}; train first (or pass --checkpoint)")
    state = load_checkpoint(path, map_location=device)
    if Trainer.learner_key not in state:  # the message names the file the user passed
        raise UserError(f"{path} holds no PlaNet world model")
    return cfg, state, run


def _savefig(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _filter(model: WorldModel, episode: Episode, generator: torch.Generator) -> tuple[State, State]:
    """Posterior and prior states [T, 1, ...] of a whole episode (T rows)."""
    return model.observe(
        torch.from_numpy(episode.image[:, None]),
        torch.from_numpy(episode.action[:, None]),
        generator,
    )


def _reconstruction_mse(model: WorldModel, episode: Episode, posterior: State) -> np.ndarray:
    """Per-step image MSE [T] (pixels in [0, 1]) of the decoded posterior of a whole episode."""
    features = model.rssm.features(posterior)  # [T, 1, F]
    errors = []
    for first in range(0, episode.num_rows, 100):  # 100 frames decoded at a time
        rows = slice(first, first + 100)
        frames = postprocess(model.decode(features[rows]), model.cfg.model.image_bits)[:, 0]
        error = (frames.cpu().numpy().astype(np.float32) - episode.image[rows]) / 255.0
        errors.append((error**2).mean(axis=(1, 2, 3)))
    return np.concatenate(errors)


# ---- 1 + 2: open loop and rewards ------------------------------------------------------------


def _open_loop(
    model: WorldModel,
    episode: Episode,
    start: int,
    horizon: int,
    filtered_mse: np.ndarray,
    out: Path,
    report: Report,
    g: Any,
) -> None:
    import matplotlib.pyplot as plt

    T = min(CONTEXT + horizon, episode.num_rows - start)  # rows start .. start + T - 1
    truth = episode.image[start : start + T]
    images = torch.from_numpy(truth[:, None])
    actions = torch.from_numpy(episode.action[start : start + T, None])
    predicted = model.open_loop(images, actions, CONTEXT, g)[:, 0].cpu().numpy()
    error = ((predicted.astype(np.float32) - truth.astype(np.float32)) / 255.0) ** 2
    per_step = error.mean(axis=(1, 2, 3))
    shown = list(range(0, T, max(1, T // 12)))[:12]
    fig = plt.figure(figsize=(1.3 * len(shown), 4.6))
    grid = fig.add_gridspec(3, len(shown), height_ratios=[1, 1, 1.3])
    for i, t in enumerate(shown):
        for row, (frames, name) in enumerate(((truth, "truth"), (predicted, "model"))):
            ax = fig.add_subplot(grid[row, i])
            ax.imshow(frames[t])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name)
            if row == 0:
                ax.set_title(f"t={start + t}" + (" ctx" if t < CONTEXT else ""), fontsize=8)
    ax = fig.add_subplot(grid[2, :])
    steps = np.arange(start, start + T)
    ax.plot(steps, per_step, marker=".", label="open loop (context, then imagined)")
    ax.plot(steps, filtered_mse[start : start + T], color="grey", label="filtered every frame")
    ax.axvline(start + CONTEXT - 0.5, color="grey", linestyle="--", label="end of context")
    ax.set_xlabel("policy step (row of the episode)")
    ax.set_ylabel("image MSE (pixels in [0,1])")
    ax.legend()
    path = _savefig(fig, out / "open_loop.png")
    report.numbers |= {
        "open_loop_start": start,
        "open_loop_mse_context": float(per_step[:CONTEXT].mean()),
        "open_loop_mse_imagined": float(per_step[CONTEXT:].mean()),
        "filtered_mse_episode": float(filtered_mse.mean()),
    }
    report.add(
        "Open-loop prediction",
        path,
        f"{CONTEXT} context frames from step {start} are filtered (reconstructions), then the "
        f"model imagines {T - CONTEXT} policy steps from the executed actions alone. Mean image "
        f"MSE: {per_step[:CONTEXT].mean():.4f} in the context, {per_step[CONTEXT:].mean():.4f} "
        f"imagined; {filtered_mse.mean():.4f} over all {episode.num_rows} steps of the episode "
        "filtered (reconstructions of every frame; --open-loop-start moves the context).",
    )


def _rewards(
    model: WorldModel,
    episode: Episode,
    posterior: State,
    start: int,
    horizon: int,
    out: Path,
    report: Report,
    g: Any,
) -> float:
    """The figure and numbers of predicted vs true reward; returns the closed-loop error."""
    import matplotlib.pyplot as plt

    closed = model.reward_head(model.rssm.features(posterior))[:, 0].cpu().numpy()
    branch = start + CONTEXT  # first imagined row: from the posterior at branch - 1
    end = min(start + CONTEXT + horizon, episode.num_rows)
    action = torch.from_numpy(episode.action[branch:end, None]).to(model.device)
    last = posterior.map(lambda x: x[branch - 1])
    prior = model.rssm.imagine(action, last, g)
    opened = model.reward_head(model.rssm.features(prior))[:, 0].cpu().numpy()
    true = episode.reward
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(true, label="true reward", color="black", linewidth=2)
    ax.plot(closed, label="predicted, closed loop (filtered)")
    ax.plot(np.arange(branch, end), opened, label=f"predicted, open loop from t={branch}")
    ax.set_xlabel("policy step (row of the episode)")
    ax.set_ylabel("reward per policy step")
    ax.legend(fontsize=8)
    path = _savefig(fig, out / "rewards.png")
    closed_err = float(np.abs(closed[1:] - true[1:]).mean())
    open_err = float(np.abs(opened - true[branch:end]).mean())
    report.numbers |= {"reward_mae_closed": closed_err, "reward_mae_open": open_err}
    report.add(
        "Reward prediction along a test episode",
        path,
        f"Mean absolute error per policy step: {closed_err:.3f} closed loop, "
        f"{open_err:.3f} open loop over {end - branch} imagined steps. The planner sees only the "
        "open-loop kind.",
    )
    return closed_err


DRIFT_STRIDE = 5
"""Rows between the starts of the imagined rollouts of the reward-drift figure."""


def _reward_drift(
    model: WorldModel,
    episode: Episode,
    posterior: State,
    horizon: int,
    planning_horizon: int,
    filtered: float,
    out: Path,
    report: Report,
    g: Any,
    planner: str = "the planner",
) -> None:
    """Open-loop reward error by imagined step k = 1..H, over starts every DRIFT_STRIDE rows;
    ``planning_horizon``: how far ``planner`` (CEM, or Dreamer's actor) looks ahead;
    ``filtered``: the closed-loop error along the same episode (from :func:`_rewards`)."""
    import matplotlib.pyplot as plt

    H = min(horizon, episode.num_rows - CONTEXT)  # rows CONTEXT .. are imagined at least once
    starts = np.arange(CONTEXT - 1, episode.num_rows - H, DRIFT_STRIDE)  # last filtered row
    rows = starts[None, :] + np.arange(1, H + 1)[:, None]  # [H, N]: the rows imagined
    action = torch.from_numpy(episode.action[rows]).to(model.device)  # [H, N, A]
    start = posterior.map(lambda x: x[torch.from_numpy(starts).to(x.device), 0])  # [N, ...]
    prior = model.rssm.imagine(action, start, g)
    opened = model.reward_head(model.rssm.features(prior)).cpu().numpy()  # [H, N]
    true = episode.reward
    per_step = np.abs(opened - true[rows]).mean(axis=1)  # [H]
    constant = float(np.abs(true[1:] - np.median(true[1:])).mean())  # the best constant's MAE
    beyond = np.flatnonzero(per_step >= constant)
    trusted = int(beyond[0]) if beyond.size else H  # decisions before it is no better
    if constant == 0.0:  # e.g. a cup-catch episode that never caught the ball
        verdict = (
            "The test episode's reward never changes, so a constant guess is exact: this "
            "episode cannot show how far ahead the reward holds (inspect a later run); "
        )
    elif trusted < H:
        verdict = f"From {trusted + 1} decisions ahead on it is no better than the constant guess; "
    else:
        verdict = f"It stays better than the constant guess for all {H}; "
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(np.arange(1, H + 1), per_step, marker=".", label="imagined (open loop)")
    ax.axhline(filtered, color="tab:green", linestyle=":", label="filtered (closed loop)")
    ax.axhline(constant, color="black", linestyle="--", label="a constant guess (the median)")
    ax.axvline(planning_horizon, color="grey", label=f"planning horizon ({planning_horizon})")
    ax.set_xlabel("decisions imagined after the last filtered frame")
    ax.set_ylabel("|predicted - true reward|")
    ax.set_title(f"reward error, mean over {len(starts)} starts of the test episode", fontsize=9)
    ax.legend(fontsize=8)
    path = _savefig(fig, out / "reward_drift.png")
    report.numbers |= {
        "reward_drift_mae": [float(v) for v in per_step],
        "reward_mae_constant": constant,
        "reward_trusted_decisions": trusted,
    }
    report.add(
        "How far ahead the imagined reward holds",
        path,
        f"Imagined from {len(starts)} starts along the test episode, the reward error is "
        f"{per_step[0]:.3f} one decision ahead and {per_step[-1]:.3f} after {H} (filtered: "
        f"{filtered:.3f}; a constant guess: {constant:.3f}). "
        + verdict
        + f"{planner} looks {planning_horizon} ahead.",
    )


# ---- 3: what the latent knows ----------------------------------------------------------------


def _ridge_r2(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² per output dimension of a ridge regression (λ = 1e-3 · trace-scaled)."""
    mean_x, mean_y = x_fit.mean(0), y_fit.mean(0)
    a, b = x_fit - mean_x, y_fit - mean_y
    gram = a.T @ a
    lam = 1e-3 * np.trace(gram) / gram.shape[0]
    weights = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), a.T @ b)
    pred = (x - mean_x) @ weights + mean_y
    residual = ((y - pred) ** 2).sum(0)
    total = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def _latent(
    model: WorldModel,
    train: list[Episode],
    test: Episode,
    filtered: tuple[State, State],
    out: Path,
    report: Report,
    g: Any,
) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    text = []
    if (
        test.state is not None
        and test.state.shape[-1] > 0  # multi-task runs store no state vector
        and all(e.state is not None for e in train)
    ):
        fit = [_filter(model, e, g)[0] for e in train]
        x_fit = np.concatenate([model.rssm.features(p)[:, 0].cpu().numpy() for p in fit])
        y_fit = np.concatenate([e.state for e in train if e.state is not None])
        x_test = model.rssm.features(filtered[0])[:, 0].cpu().numpy()
        r2 = _ridge_r2(x_fit, y_fit, x_test, test.state)
        axes[0].bar(np.arange(len(r2)), np.clip(r2, -0.1, 1.0))
        axes[0].set_ylim(-0.1, 1.0)
        axes[0].set_xlabel("state dimension (as the env's observation, flattened)")
        axes[0].set_ylabel("R² on the test episode")
        axes[0].set_title("linear read-out of the simulator state")
        report.numbers["state_r2"] = [float(v) for v in r2]
        text.append(
            f"A ridge probe from the features [s, h] fit on {len(train)} train episodes explains "
            f"R² = {np.median(r2):.2f} (median over {len(r2)} state dimensions) of the test "
            "episode's simulator state."
        )
    else:
        axes[0].text(0.5, 0.5, "episodes carry no simulator state", ha="center")
    per_dim = kl_normal_per_dim(*filtered)[:, 0].mean(0).cpu().numpy()  # [S]
    axes[1].bar(np.arange(len(per_dim)), per_dim)
    axes[1].set_xlabel("latent dimension of s")
    axes[1].set_ylabel("mean KL(q‖p) [nats]")
    axes[1].set_title("which stochastic dimensions carry information")
    path = _savefig(fig, out / "latent.png")
    used = int((per_dim > 0.1).sum())
    report.numbers["kl_per_dim"] = [float(v) for v in per_dim]
    text.append(
        f"{used} of {len(per_dim)} stochastic dimensions have a mean KL above 0.1 nats: the "
        "others are (nearly) unused and follow the prior."
    )
    report.add("What the latent knows", path, " ".join(text))


# ---- 4: how the planner decides ----------------------------------------------------------------


def _planner(
    cfg: Config,
    model: WorldModel,
    device: torch.device,
    steps: list[int],
    sim_planner: PlannerConfig,
    out: Path,
    report: Report,
) -> None:
    seed = episode_seed(cfg.seed, "inspect", 0, cfg.task_count)
    recorded: list[CEMIteration] = []
    agent = PlanetAgent(
        model,
        cfg.planner,
        noise=0.0,
        generator=counter_generator(device, seed),
        on_iteration=recorded.append,
        test=True,
    )
    env = make_env(cfg, seed=seed)
    try:
        sim = None
        if isinstance(env, DmcEnv):
            sim = TrueSimulatorAgent(env, sim_planner, generator=torch.Generator().manual_seed(0))
        observation, total = env.reset(seed=seed), 0.0
        agent.reset()
        for t in range(env.max_policy_steps):
            recorded.clear()
            sim_action = sim.act(observation) if sim is not None and t in steps else None
            action = agent.act(observation)
            if t in steps:
                _planner_figure(t, recorded, action, sim_action, sim_planner, out, report)
            result = env.step(action)
            observation, total = result.observation, total + result.reward
            if result.done:
                break
    finally:
        env.close()
    report.numbers["inspect_episode_return"] = total


def _rounded(action: np.ndarray) -> list[float]:
    return [round(float(a), 3) for a in action]


def _planner_figure(
    t: int,
    iterations: list[CEMIteration],
    action: np.ndarray,
    sim_action: np.ndarray | None,
    sim_planner: PlannerConfig,
    out: Path,
    report: Report,
) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    returns = [it.returns[0].float().cpu().numpy() for it in iterations]
    returns = [r[np.isfinite(r)] for r in returns]
    axes[0].violinplot(returns, positions=np.arange(1, len(returns) + 1), showmedians=True)
    axes[0].set_xlabel("CEM iteration")
    axes[0].set_ylabel("predicted return of a candidate")
    axes[0].set_title(f"step {t}: candidate returns")
    means = np.array([it.mean[0, 0].float().cpu().numpy() for it in iterations])  # [I, A]
    stds = np.array([it.std[0, 0].float().cpu().numpy() for it in iterations])
    x = np.arange(1, len(iterations) + 1)
    for a in range(means.shape[1]):
        axes[1].errorbar(x, means[:, a], yerr=stds[:, a], capsize=3, label=f"first action[{a}]")
        axes[1].axhline(action[a], linestyle="--", linewidth=1, color=f"C{a}")
        if sim_action is not None:
            axes[1].scatter([x[-1] + 0.4], [sim_action[a]], marker="*", s=120, color=f"C{a}")
    axes[1].set_xlabel("CEM iteration (bars: elite std; dashed: executed; ★ true simulator)")
    axes[1].set_ylabel("action")
    axes[1].set_ylim(-1.1, 1.1)
    axes[1].legend(fontsize=8)
    path = _savefig(fig, out / f"planner_{t:04d}.png")
    text = (
        f"Executed action {_rounded(action)}; the elite std of the first action "
        f"shrank from {stds[0].mean():.3f} to {stds[-1].mean():.3f} over {len(iterations)} "
        "iterations."
    )
    if sim_action is not None:
        text += (
            f" The true-simulator planner ({sim_planner.candidates} candidates × "
            f"{sim_planner.iterations} iterations on the real physics) chose "
            f"{_rounded(sim_action)} at the same state."
        )
    report.add(f"How the planner decides at step {t}", path, text)


# ---- entry point -------------------------------------------------------------------------------


# ---- 4 (Dreamer): the value against the real return ------------------------------------------


def _values(
    cfg: Config,
    model: WorldModel,
    state: dict[str, Any],
    episode: Episode,
    posterior: State,
    out: Path,
    report: Report,
    g: torch.Generator,
) -> None:
    """The value v(f_t) and the actor's imagined return from every filtered state of the test
    episode, beside the real discounted return Σ_k γ^k r_{t+k} (cut at the episode's end)."""
    import matplotlib.pyplot as plt

    from planet_torch.agents.dreamer import DreamerLearner, lambda_return

    d = cfg.dreamer
    learner = DreamerLearner(model, d)
    learner.load_state_dict(state[Trainer.learner_key]["behaviour"])
    start = posterior.map(lambda x: x[:, 0])  # [T+1, ...]: every row's filtered state
    start_features = model.rssm.features(start)
    value = learner.value(start_features).cpu().numpy()
    features = learner.imagine(start, g)  # [H, T+1, F]: imagined states 1..H after each start
    reward, future = model.reward_head(features), learner.value(features)
    after = lambda_return(reward[:-1], future[:-1], d.discount, future[-1], d.lambda_)[0]
    # From the start state on: its own reward, then the λ-return of imagined state 1 (which
    # already holds that state's reward), as v(f_t) and the true return count them.
    imagined = (model.reward_head(start_features) + d.discount * after).cpu().numpy()
    true = np.zeros(episode.num_rows)
    running = 0.0
    for t in reversed(range(episode.num_rows)):
        running = episode.reward[t] + d.discount * running
        true[t] = running
    # Rows within ~1/(1-γ) of the end see a cut-off return: score the value before them.
    scored = slice(1, max(2, episode.num_rows - int(1 / (1 - d.discount))))
    mae = float(np.abs(value[scored] - true[scored]).mean())
    corr = float(np.corrcoef(value[scored], true[scored])[0, 1]) if len(true[scored]) > 2 else 0.0
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(true, label="real discounted return from t (cut at the episode's end)", color="black")
    ax.plot(value, label="value network v(f_t)")
    ax.plot(imagined, label=f"actor's imagined λ-return from t ({d.horizon} steps + value)")
    ax.axvline(scored.stop, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("policy step (row of the episode)")
    ax.set_ylabel(f"return, γ = {d.discount}")
    ax.legend(fontsize=8)
    path = _savefig(fig, out / "values.png")
    report.numbers |= {"value_mae": mae, "value_corr": corr}
    report.add(
        "The value against the real return",
        path,
        f"Before the dotted line (the last {int(1 / (1 - d.discount))} rows see a return cut by "
        f"the episode's end): mean absolute error {mae:.1f}, correlation {corr:.2f}. The actor "
        "maximises the imagined return; where it drifts from the real one, the model or the "
        "value misleads it.",
    )


def _write_html(report: Report, out: Path) -> Path:
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "</style>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    for heading, image, text in report.sections:
        parts += [
            f"<h2>{html.escape(heading)}</h2>",
            f"<p>{html.escape(text)}</p>",
            f"<img src='{html.escape(image)}' alt='{html.escape(heading)}'>",
        ]
    parts.append("<h2>Numbers</h2><pre>" + html.escape(json.dumps(report.numbers, indent=1)))
    parts.append("</pre>")
    atomic_write_text(out / "numbers.json", json.dumps(report.numbers, indent=2) + "\n")
    return atomic_write_text(out / "report.html", "\n".join(parts) + "\n")


def inspect_run(
    run_dir: Path,
    checkpoint: Path | None = None,
    output: Path | None = None,
    device: str = "auto",
    horizon: int = 30,
    planner_steps: tuple[int, ...] = (0, 20, 60),
    sim_candidates: int = 100,
    sim_iterations: int = 4,
    open_loop_start: int = 0,
) -> Path:
    """Write the figures and report.html; returns the report's path."""
    torch_device = resolve_device(device)
    cfg, state, run = _load(run_dir, checkpoint, torch_device)
    test_dir, train_dir = EpisodeDir(run.test_episodes), EpisodeDir(run.train_episodes)
    tests, trains = test_dir.paths(), train_dir.paths()
    if not tests or not trains:
        raise UserError(f"{run.path} has no episodes to inspect yet; train first")
    test = test_dir.load(tests[-1])  # the newest: the latest planned test episode
    train = [e for e in (train_dir.load(p) for p in trains[-5:]) if e is not None]
    if test is None:
        raise UserError(f"{tests[-1]} could not be read")
    if test.num_rows <= CONTEXT:
        raise UserError(
            f"the test episode {tests[-1].name} has {test.num_rows} steps: too short to inspect "
            f"({CONTEXT} context steps and at least one imagined)"
        )
    if not 0 <= open_loop_start <= test.num_rows - CONTEXT - 1:
        raise UserError(
            f"--open-loop-start {open_loop_start} is outside the test episode {tests[-1].name} "
            f"({test.num_rows} steps): choose 0 to {test.num_rows - CONTEXT - 1}"
        )
    probe = test.state.shape[-1] if test.state is not None else 0
    model = trained_world_model(cfg, state, test.action.shape[-1], probe, torch_device)
    updates = state["counters"]["updates"]
    out = output if output is not None else run.path / f"inspect-{updates:07d}"
    writable_folder(out, "-o")
    report = Report(f"{cfg.task} ({cfg.variant}) after {updates} updates — {run.path.name}")
    report.numbers |= {"task": cfg.task, "updates": updates, "test_episode": tests[-1].name}
    g = counter_generator(torch_device, cfg.seed, 777)
    with torch.inference_mode():
        filtered = _filter(model, test, g)  # posterior and prior of the test episode, once
        filtered_mse = _reconstruction_mse(model, test, filtered[0])
        _open_loop(model, test, open_loop_start, horizon, filtered_mse, out, report, g)
        closed_err = _rewards(model, test, filtered[0], open_loop_start, horizon, out, report, g)
        if cfg.algo == "dreamer":
            ahead, planner = cfg.dreamer.horizon, "the actor's imagination"
        else:
            ahead, planner = cfg.planner.horizon, "the planner"
        _reward_drift(model, test, filtered[0], horizon, ahead, closed_err, out, report, g, planner)
        _latent(model, train, test, filtered, out, report, g)
    if cfg.algo == "dreamer":
        with torch.inference_mode():
            _values(cfg, model, state, test, filtered[0], out, report, g)
        return _write_html(report, out)
    sim_planner = PlannerConfig(
        horizon=cfg.planner.horizon,
        candidates=sim_candidates,
        top_k=max(1, sim_candidates // 10),
        iterations=sim_iterations,
    )
    if cfg.planner.iterations == 0:  # the random-action ablation: no search to draw
        report.numbers["planner"] = "random actions (planner.iterations 0): no search to show"
    else:
        _planner(cfg, model, torch_device, list(planner_steps), sim_planner, out, report)
    return _write_html(report, out)
