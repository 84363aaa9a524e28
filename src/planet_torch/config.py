"""Every knob of planet-torch in one frozen dataclass tree, with three presets.

Units are part of the names, because PlaNet ports keep confusing them:

* ``env_steps``   -- simulator steps: a policy step counts ``action_repeat`` of them (a
  dm_control episode is 1000 env steps); the papers' x-axis and budgets count these.
* ``policy_steps`` -- decisions of the agent; one policy step = ``action_repeat`` env steps.
* ``updates``     -- gradient updates (one batch of ``batch_size`` chunks each).
* ``sequences``   -- training chunks; the original's trainer counts these: its
  ``train_steps = 50000`` is 50 000 sequences = 1000 updates of batch 50, not 50 000 updates.

Presets: ``paper`` follows google-research/planet at HEAD (docs/original.md: every value,
where it lives in the original, and where ``paper`` is not the original), ``cpu`` is small enough to learn on a 2-core machine, ``debug`` is tiny and
exists for tests. Config objects are immutable: derive a variant with ``dataclasses.replace`` or
:func:`override`, never mutate one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from planet_torch.errors import UserError

# ---------------------------------------------------------------------------------------------
# Task table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """One task: where it comes from and the paper's action repeat."""

    name: str
    """Name used on the command line, e.g. ``cartpole-swingup``."""
    suite: Literal["dmc", "gym", "py", "test", "multi"]
    """``dmc`` = dm_control suite, ``gym`` = gymnasium, ``py`` = a user's factory, ``test`` =
    the built-in test environment."""
    env_id: str
    """dm_control ``domain/task``, gymnasium id, or ``package.module:factory``."""
    action_repeat: int
    """Env steps per policy step in the paper / original code (scripts/tasks.py); for a task
    outside the table the suite's default (:data:`DEFAULT_ACTION_REPEAT`)."""
    episode_env_steps: int = 1000
    """Episode length in env steps; the episode has ``episode_env_steps // action_repeat`` decisions."""
    paper_score: float | None = None
    """PlaNet's final return in the paper's Table 1 (None where the task is not in it)."""
    true_sim_score: float | None = None
    """'CEM + true simulator' in the paper's Table 1."""
    state_components: tuple[str, ...] = ()
    """dm_control observation keys that make up the flat state vector (model-free baselines and
    state-diagnostic heads); empty = all keys in the order the environment gives them."""


_TASK_LIST: tuple[TaskSpec, ...] = (
    TaskSpec("cartpole-balance", "dmc", "cartpole/balance", 8),
    TaskSpec("cartpole-swingup", "dmc", "cartpole/swingup", 8, 1000, 821.0, 850.0),
    TaskSpec("finger-spin", "dmc", "finger/spin", 2, 1000, 700.0, 825.0),
    TaskSpec("cheetah-run", "dmc", "cheetah/run", 4, 1000, 662.0, 656.0),
    # Latest official code and the paper text say 4; the camera-ready commit and Kaixhin use 6.
    TaskSpec("cup-catch", "dmc", "ball_in_cup/catch", 4, 1000, 930.0, 993.0),
    TaskSpec("walker-walk", "dmc", "walker/walk", 2, 1000, 951.0, 994.0),
    TaskSpec("reacher-easy", "dmc", "reacher/easy", 4, 1000, 832.0, 964.0),
    # The original's gym_racecar (CarRacing-v0) and gym_cheetah (HalfCheetah-v3), today's versions.
    TaskSpec("car-racing", "gym", "CarRacing-v3", 1),
    TaskSpec("half-cheetah", "gym", "HalfCheetah-v5", 1),
    # A tiny deterministic environment for fast tests (see envs/testing.py).
    TaskSpec("test-reach", "test", "reach", 2, 40),
)
TASKS: dict[str, TaskSpec] = {t.name: t for t in _TASK_LIST}

DEFAULT_ACTION_REPEAT = {"dmc": 2, "gym": 1, "py": 1}
"""Action repeat of a task outside the table (``--env.action-repeat`` overrides it): dm_control
2, as Dreamer uses for every suite task; gymnasium 1 and a user's env 1, as the original's gym
tasks."""

TASK_FORMS = "dmc:DOMAIN-TASK (e.g. dmc:walker-run), gym:ENV_ID, py:package.module:factory"


def task_spec(name: str) -> TaskSpec:
    """Look a task up by name; an unknown name is a user error that lists the valid ones.

    Besides the table: ``dmc:DOMAIN-TASK`` is any dm_control suite task (``dmc:ball_in_cup-catch``;
    the table's action repeat where the table has it), ``gym:ENV_ID`` any gymnasium env with
    continuous actions and an RGB render, ``py:package.module:factory`` a user's env
    (envs/custom.py); ``a+b+c`` is one agent for several dm_control tasks (envs/multitask.py).
    Whether such a task exists is checked where its env is built (envs/)."""
    if "+" in name:
        return _multi_task_spec(name)
    if name in TASKS:
        return TASKS[name]
    suite, colon, rest = name.partition(":")
    if colon and suite == "dmc":
        domain, dash, task = rest.partition("-")
        if not (dash and domain and task):
            raise UserError(
                f"task {name!r}: dm_control tasks are named dmc:DOMAIN-TASK, e.g. dmc:walker-run"
            )
        env_id = f"{domain}/{task}"
        for known in _TASK_LIST:
            if known.suite == "dmc" and known.env_id == env_id:
                return dataclasses.replace(known, name=name)
        return TaskSpec(name, "dmc", env_id, DEFAULT_ACTION_REPEAT["dmc"])
    if colon and suite == "gym" and rest:
        for known in _TASK_LIST:
            if known.suite == "gym" and known.env_id == rest:
                return dataclasses.replace(known, name=name)
        return TaskSpec(name, "gym", rest, DEFAULT_ACTION_REPEAT["gym"], _gym_time_limit(rest))
    if colon and suite == "py":
        if rest.count(":") != 1 or not all(rest.split(":")):
            raise UserError(f"task {name!r}: name a factory as py:package.module:function")
        return TaskSpec(name, "py", rest, DEFAULT_ACTION_REPEAT["py"])
    raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}, or {TASK_FORMS}")


def _gym_time_limit(env_id: str) -> int:
    """The env's own registered episode length in env steps (Pendulum-v1: 200), the one its
    users know; 1000 where it registers none, or where the id is unknown (envs/ reports that)."""
    try:
        import gymnasium  # a registry lookup: no env is built

        steps = gymnasium.spec(env_id).max_episode_steps
    except Exception:  # any failure here is reported where the env is built
        return 1000
    return int(steps) if steps else 1000


def task_slug(name: str) -> str:
    """A task name as a file name: ``dmc:walker-run`` -> ``dmc_walker-run``."""
    return name.replace(":", "_").replace("/", "_")


def _multi_task_spec(name: str) -> TaskSpec:
    parts = name.split("+")
    if "" in parts:  # "a+", "+a", "a++b"
        raise UserError(f"multi-task {name!r}: a task name is missing around a '+'")
    specs = [task_spec(part) for part in parts]
    if len(set(parts)) != len(parts) or not 2 <= len(parts) <= 10:
        raise UserError(f"multi-task {name!r}: give 2 to 10 different tasks joined by '+'")
    if any(s.suite != "dmc" for s in specs):
        raise UserError(f"multi-task {name!r}: only dm_control tasks can be combined")
    repeats = {s.action_repeat for s in specs}
    lengths = {s.episode_env_steps for s in specs}
    # action_repeat 0 = the tasks disagree: Config.validate asks for --env.action-repeat.
    return TaskSpec(name, "multi", name, repeats.pop() if len(repeats) == 1 else 0, max(lengths))


# ---------------------------------------------------------------------------------------------
# Config sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvConfig:
    """How episodes are produced."""

    action_repeat: int | None = None
    """Env steps per policy step; None = the task's paper value (task table)."""
    episode_env_steps: int | None = None
    """Episode length in env steps; None = the task's value (1000 for dm_control, a gymnasium
    env's own registered time limit)."""
    image_size: int = 64
    """Rendered square image side in pixels (the original renders 64×64 directly, no resize)."""
    camera_id: int = 0
    """dm_control camera used for rendering (the original uses 0 for every task)."""
    exact_render: bool = True
    """Render dm_control pixel-exact like ``physics.render`` (shadows, reflections), as the
    original trains on (tested equal). False: shadows and reflections off and coarser
    spheres/capsules -- same camera, framing and bodies; the floor and background differ
    (mean 0.75 grey levels on cartpole and cheetah, 5-5.5 on walker, cup and finger, 25 on
    reacher, whose floor is lit differently), 6-11× faster frames on llvmpipe
    (benchmarks/bench_render_diff.py, docs/results/render_diff.png); the ``cpu`` and ``debug``
    presets render so."""
    workers: int = 1
    """Environment worker processes for collection and evaluation (1 = in-process)."""


@dataclass(frozen=True)
class DataConfig:
    """How training chunks are cut from stored episodes."""

    batch_size: int = 50
    """Chunks per gradient update (original: batch_shape[0] = 50)."""
    chunk_length: int = 50
    """Policy steps per chunk (original: batch_shape[1] = 50); chunks never cross episodes."""


@dataclass(frozen=True)
class ModelConfig:
    """World model: encoder, RSSM, decoder, reward head."""

    kind: Literal["rssm", "ssm"] = "rssm"
    """``rssm`` (PlaNet) or ``ssm`` (purely stochastic ablation)."""
    mean_only: bool = False
    """Deterministic ablation: the latent sample is its mean (use with ``loss.kl_scale = 0``)."""
    cell: Literal["gru", "lstm"] = "gru"
    """Recurrent cell of the deterministic path (original: TF GRUBlockCell)."""
    belief_size: int = 200
    """Deterministic recurrent state size h (original: 200)."""
    state_size: int = 30
    """Stochastic state size s (original: 30)."""
    hidden_size: int = 200
    """Units of the hidden dense layer in each RSSM block (original ``embed_size`` = 200)."""
    min_stddev: float = 0.1
    """Added to softplus(std) of prior and posterior (original: 0.1)."""
    future_rnn: bool = True
    """Prior reads the GRU output h_t (True, standard RSSM) or the pre-GRU hidden (original option)."""
    cnn_depth: int = 32
    """Channels of the first conv; later convs use 2×, 4×, 8× (original: 32 → embedding 1024)."""
    reward_layers: int = 3
    """Hidden layers of the reward MLP (original HEAD: 3)."""
    reward_units: int = 300
    """Units per hidden layer of the reward MLP (original HEAD: 300)."""
    image_bits: int = 5
    """Bit depth images are reduced to before the model sees them (original: 5)."""
    state_diagnostics: bool = False
    """Train detached probes that read the dm_control state from the features (never shape the model)."""
    fast_kernels: bool = True
    """Build the encoder, decoder and RSSM from the faster kernels of models/fast.py and
    models/fast_rssm.py (same parameters and function, tested equal; a checkpoint loads into
    either) instead of the plain reference modules. An implementation switch, not PlaNet's."""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    """Encoder/decoder precision (autocast); RSSM, log-probs, KL stay float32. ``auto``: bfloat16
    on a CPU where the convs measure >= 1.2x faster in it (e.g. avx512_bf16), else float32; the
    losses match float32's (tested). Original: float32. On an Ampere-or-newer NVIDIA GPU,
    PyTorch's cuDNN computes float32 convolutions in TF32 by default, and planet-torch leaves it
    so (faster; a 10-bit mantissa inside the convs): docs/original.md."""


@dataclass(frozen=True)
class LossConfig:
    """Named scales of the loss terms."""

    image_scale: float = 1.0
    """Weight of the image NLL, summed over pixels (original: 1)."""
    reward_scale: float = 10.0
    """Weight of the reward NLL (original: 10)."""
    kl_scale: float = 1.0
    """Weight of KL(posterior ‖ prior) (original ``divergence_scale``: 1; deterministic ablation 0)."""
    free_nats: float = 3.0
    """KL below this many nats per (batch, time) element is not penalised (original: 3; where
    the clamp applies: ``free_nats_over``)."""
    free_nats_over: Literal["element", "batch"] = "element"
    """Where free nats clamp the KL: ``element``, each (time, batch) element's KL, then the mean
    (PlaNet's original); ``batch``, the mean KL of the batch, clamped once (Dreamer's original,
    ``tf.maximum(mean KL, free_nats)``): no element's KL is pushed down while the batch's mean
    stays under ``free_nats``, and every element's is once it is above."""
    overshooting_distance: int = 0
    """Latent overshooting up to this many steps ahead; 0 = off (original: off)."""
    overshooting_first_distance: int = 2
    """Shortest overshooting distance: 2 as the original at HEAD (distances 2..D; distance 1 is
    the ordinary KL term); 1 counts the one-step KL once more inside the overshooting mean, as
    the paper's equation 7 writes it (d = 1..D). The camera-ready code (commit 0c6f7d3) rolled
    out D + 1 steps and also used distances 2..D+1: ``overshooting_distance`` D + 1 here
    (docs/original.md)."""
    overshooting_kl_scale: float = 0.0
    """Weight of the overshooting KL terms (used when ``overshooting_distance`` > 0)."""
    overshooting_reward_scale: float = 0.0
    """Weight of the reward NLL on overshooting priors."""
    global_kl_scale: float = 0.0
    """Weight of KL(posterior ‖ N(0, I)) (original: 0; at HEAD a non-zero value fails there, the
    camera-ready code computed this same term)."""


@dataclass(frozen=True)
class OptimConfig:
    """Adam on the world model."""

    learning_rate: float = 1e-3
    """Adam step size (original: 1e-3)."""
    adam_eps: float = 1e-4
    """Adam epsilon (original: 1e-4)."""
    grad_clip_norm: float = 1000.0
    """Global gradient-norm clip (original: 1000)."""
    warmup_updates: int = 0
    """Linear learning-rate warm-up in updates (original HEAD: none; camera-ready: 200)."""
    cuda_graph: bool = False
    """On a GPU, capture the whole world-model update as one CUDA graph and replay it (same
    algorithm, Adam in TF's form; 2.7× faster than eager on an H200 in
    benchmarks/bench_update_graph.py). Off until a GPU session has run it inside ``planet train``
    (issue 22); no effect on a CPU."""


@dataclass(frozen=True)
class PlannerConfig:
    """Cross-entropy method in latent space, replanning every policy step (MPC)."""

    horizon: int = 12
    """Policy steps imagined per candidate (original: 12)."""
    candidates: int = 1000
    """Action sequences sampled per iteration (original: 1000)."""
    top_k: int = 100
    """Elite sequences the Gaussian is refit to (original: 100)."""
    iterations: int = 10
    """CEM iterations per decision; 0 = no planning (random-collection ablation) (original: 10)."""
    warm_start: bool = False
    """Start from the previous plan shifted by one step (original: re-init N(0, 1) every step)."""
    train_noise: float = 0.3
    """Std of Gaussian exploration noise on collected training episodes (original: 0.3)."""
    test_noise: float = 0.0
    """Std of exploration noise on test episodes (original: 0)."""
    cuda_graph: bool = True
    """On a GPU, capture one whole decision as a CUDA graph and replay it (same algorithm; an
    implementation speed-up: a decision is thousands of tiny kernels)."""
    imagination: Literal["sample", "mean"] = "sample"
    """How a candidate's future is imagined when collecting training episodes: ``sample`` draws
    one stochastic state per step from the prior (original); ``mean`` follows the prior means."""
    test_imagination: Literal["sample", "mean"] = "sample"
    """The same for noise-free test episodes, ``planet eval`` and ``planet inspect``. With
    ``mean`` candidates are ranked on their actions, not on the luck of their sampled futures:
    the same trained cpu-preset models scored +70 to +150 (BENCHMARKS.md). Original: sample."""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    """Arithmetic of the imagined rollouts. ``auto``: bfloat16 on a CPU where it measures
    >= 1.3x faster (avx512_bf16, AMX), else float32. Original: float32."""


@dataclass(frozen=True)
class ScheduleConfig:
    """The training schedule, in updates and episodes (not the original's sequence counts)."""

    seed_episodes: int = 5
    """Random episodes collected into train_episodes/ before training (original: 5)."""
    test_seed_episodes: int = 5
    """Random episodes collected into test_episodes/ before training (original: 5)."""
    collect_every_updates: int = 100
    """One planned episode with exploration noise per this many updates (original: 5000 sequences = 100)."""
    min_updates_per_decision: float = 0.0
    """At least this many updates per decision of a train episode: the updates between two
    collected episodes are ``max(collect_every_updates, ceil(min_updates_per_decision ×
    decisions per episode))`` (:attr:`Config.updates_per_train_episode`). A rule in decisions
    rather than episodes: at one action repeat an episode of 1000 env steps holds 500 distinct
    frames, at repeat 8 only 125, so a fixed count per episode replays each frame of a
    repeat-2 task a quarter as often as one of a repeat-8 task. 0 = off (the original)."""
    test_every_updates: int = 1000
    """Updates per train phase; then a test phase (original: 50 000 sequences = 1000 updates,
    i.e. one test episode per 10 train episodes). Counted at ``collect_every_updates`` updates
    per train episode: where ``min_updates_per_decision`` gives a task more updates per episode,
    its train phases stretch by the same factor (:attr:`Config.updates_per_test_phase`), so
    every task tests after the same number of train episodes."""
    test_batches: int = 1
    """Batches from test_episodes/ scored without gradient per test phase (original: 50 seqs = 1)."""
    test_episodes: int = 1
    """Noise-free planned episodes per test phase, saved to test_episodes/ (original: 1)."""
    total_updates: int = 100_000
    """Stop after this many updates. The paper's curves end at 1000 episodes ≈ 100k updates (the
    original's max_steps 5e7 sequences ≈ 1M updates is never reached in practice)."""
    max_hours: float | None = None
    """Stop (with a checkpoint) after this much wall-clock time; None = no limit."""
    checkpoint_every_minutes: float = 10.0
    """Besides the checkpoint of every test phase (and of Ctrl-C, SIGTERM, a closed SSH
    session), one after a collected train episode once this many minutes have passed since
    the last: a kill -9, an out-of-memory kill or a power cut loses at most about this much
    work, or one train episode's updates where those take longer (a paper-size test phase is
    1 000 updates apart: hours on a CPU). 0 = after every train episode. Where checkpoints
    fall never changes what a run computes (tested)."""
    max_env_steps: int | None = None
    """Env-step budget: stop once train_episodes/ hold this many env steps (simulator steps,
    each policy step counted as action_repeat; seed episodes included, as the papers count them:
    DMC-100k = 100 000), with a test phase at the budget. None = no budget. A run ends at
    whichever limit it reaches first."""
    final_eval_episodes: int = 10
    """Noise-free episodes the final model plays when a run reaches its end (``planet eval``,
    written to scores.json): the run's score, as the papers report it (10 per seed); 0 = none.
    The original code plays no such eval: its only score is each test phase's one episode."""


@dataclass(frozen=True)
class DDPGConfig:
    """The model-free baseline (Lillicrap et al. 2016), used with ``--algo ddpg``.

    Units: one update per ``updates_per_policy_step`` policy steps; schedule.total_updates and
    schedule.seed_episodes apply as for PlaNet, and a test episode runs every
    schedule.test_every_updates updates.
    """

    obs: Literal["state", "pixels"] = "state"
    """Learn from the flat simulator state or from 64×64 pixels (conv encoder shared by the critic)."""
    hidden_units: int = 256
    """Units of each hidden layer of actor and critic."""
    hidden_layers: int = 2
    """Hidden layers of actor and critic."""
    actor_lr: float = 1e-4
    """Adam step size of the actor."""
    critic_lr: float = 1e-3
    """Adam step size of the critic (and the pixel encoder)."""
    discount: float = 0.99
    """γ of the critic's target r + γ·Q'(s', μ'(s'))."""
    batch_size: int = 256
    """Transitions per update."""
    updates_per_policy_step: float = 1.0
    """Gradient updates per policy step collected."""
    target_update: Literal["soft", "hard"] = "soft"
    """soft: Polyak averaging with tau after every update; hard: copy every hard_update_every."""
    tau: float = 0.005
    """Polyak factor of soft target replacement: θ' ← τ·θ + (1 − τ)·θ'."""
    hard_update_every: int = 1000
    """Updates between hard target copies θ' ← θ."""
    noise: Literal["gaussian", "ou"] = "gaussian"
    """Exploration noise process on the actions in [-1, 1]."""
    noise_std: float = 0.1
    """Std of Gaussian exploration noise, or σ of the Ornstein-Uhlenbeck process."""
    ou_theta: float = 0.15
    """Mean reversion θ of the Ornstein-Uhlenbeck process."""
    cnn_depth: int = 32
    """First conv's channels of the pixel encoder (as the world model's encoder)."""


@dataclass(frozen=True)
class DreamerConfig:
    """The latent actor-critic of Dreamer (Hafner et al. 2020), used with ``--algo dreamer``.

    PlaNet's world model, losses, replay and schedule stay as they are; an actor and a value
    network on the latent features, learnt only from trajectories imagined from every posterior
    state of each training batch, replace CEM. Defaults: the original's (danijar/dreamer,
    ``dreamer.py:define_config`` and ``models.py:ActionDecoder``; docs/dreamer.md).
    """

    horizon: int = 15
    """Imagined policy steps from every posterior state of the batch (original: 15)."""
    discount: float = 0.99
    """γ of the imagined returns (original: 0.99)."""
    lambda_: float = 0.95
    """λ of the λ-returns that mix n-step returns (original ``disclam``: 0.95)."""
    units: int = 400
    """Units of each hidden ELU layer of actor and value (original ``num_units``: 400)."""
    actor_layers: int = 4
    """Hidden layers of the actor (original: 4)."""
    value_layers: int = 3
    """Hidden layers of the value network (original: 3)."""
    actor_lr: float = 8e-5
    """Adam step size of the actor (original: 8e-5)."""
    value_lr: float = 8e-5
    """Adam step size of the value network (original: 8e-5)."""
    model_lr: float = 6e-4
    """Adam step size of the world model under Dreamer, in place of optim.learning_rate
    (original ``model_lr``: 6e-4; PlaNet's is 1e-3)."""
    adam_eps: float = 1e-7
    """Adam ε of all three optimisers, TF's default (original: tf.optimizers.Adam(lr))."""
    grad_clip_norm: float = 100.0
    """Global gradient-norm clip of each optimiser, the world model's included (original: 100)."""
    init_std: float = 5.0
    """The actor's std before the tanh at zero output (original ``action_init_std``: 5)."""
    mean_scale: float = 5.0
    """The actor's mean before the tanh is ``mean_scale · tanh(x / mean_scale)`` (original: 5)."""
    min_std: float = 1e-4
    """Added to the actor's softplus std (original: 1e-4)."""
    exploration_noise: float = 0.3
    """Std of Gaussian noise added to sampled actions when collecting, then clipped to [-1, 1]
    (original ``expl_amount``: 0.3); test and eval actions take the mode, noise-free."""
    mode_samples: int = 100
    """The mode of the tanh-Gaussian is the likeliest of this many samples (original
    ``SampleDist``: 100)."""
    entropy_scale: float = 0.0
    """Soft returns: each imagined reward minus ``entropy_scale`` · log π(a | s) of the action
    taken (0 = the original, which has no such term). The tanh-Gaussian's log density holds
    −log(1 − a²), which grows without bound as |a| → 1, so this pulls an actor off its bounds
    exactly where the gradient through the tanh vanishes. On cartpole-swingup at action repeat
    2 the original's actor locked at a bound within 225 updates and stayed (75 at 100k env
    steps); at 0.1 it stayed off its bounds and scored 279 there and 364 at the ``cpu``
    preset's repeat 8 (246 without; Dreamer's published 326), one seed each (BENCHMARKS.md,
    session 19); at the ``cpu`` preset, seed 0: cheetah-run 334 (published 235), reacher-easy
    46 (published 314, random 63; session 20), cup-catch 638 (published 246; session 22). The
    ``cpu`` preset sets 0.1; the ``paper`` preset keeps the original's 0."""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    """The behaviour update's arithmetic: imagination, reward head, actor and value networks
    under bfloat16 autocast (the actor's distribution, the λ-returns and the losses stay
    float32), or all float32. The original trains in mixed float16 throughout
    (``dreamer.py``: ``precision = 16``, Keras ``mixed_float16``). bfloat16 made the ``cpu``
    preset's behaviour update 1.27× faster on an AMX Xeon (0.126 → 0.099 s, quiet, 2 threads;
    a whole Dreamer update 0.252 → 0.225 s; session 23). Its one paired learning run
    (cheetah-run seed 1, quiet, 2-core Zen 4; session 31) took 30.0 min against float32's 34.5
    and scored 162.9 against 325.1, so both presets keep float32. Only where bf16 matmuls are
    fast: ``auto`` measures once per machine (an actor-sized MLP's forward and backward, kept
    as the model's ``auto`` keeps its ratio) and takes bfloat16 where it ran ≥ 1.3× faster; a
    run keeps the choice it started with when it resumes; ``planet doctor`` says what ``auto``
    picks here."""


# ---------------------------------------------------------------------------------------------
# What each number may be
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """The values one numeric setting may take: ``low`` up to ``high``, ``low`` itself
    excluded where ``low_open``; never NaN, and infinite only where ``inf_ok`` (a clip norm or
    a time limit of inf is "none")."""

    low: float
    high: float = math.inf
    low_open: bool = False
    inf_ok: bool = False

    def admits(self, value: float) -> bool:
        if math.isinf(value) and not self.inf_ok:
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high  # False for NaN

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low == self.high:
            return low
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}]"


def _number(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and float(x).is_integer() else f"{x:g}"


AT_LEAST_1, AT_LEAST_0 = Bound(1), Bound(0)
POSITIVE, UNIT = Bound(0, low_open=True), Bound(0, 1)

BOUNDS: dict[str, dict[str, Bound]] = {
    "": {"seed": Bound(0, 2**32 - 1)},
    "env": {
        "action_repeat": AT_LEAST_1,
        "episode_env_steps": AT_LEAST_1,
        "image_size": Bound(64, 64),  # the conv encoder's input
        "camera_id": AT_LEAST_0,  # the env checks it names one of its cameras
        "workers": AT_LEAST_1,
    },
    "data": {"batch_size": AT_LEAST_1, "chunk_length": Bound(2)},
    "model": {
        "belief_size": AT_LEAST_1,
        "state_size": AT_LEAST_1,
        "hidden_size": AT_LEAST_1,
        "min_stddev": AT_LEAST_0,
        "cnn_depth": AT_LEAST_1,
        "reward_layers": AT_LEAST_0,  # 0: a linear reward head
        "reward_units": AT_LEAST_1,
        "image_bits": Bound(1, 8),
    },
    "loss": {
        "image_scale": AT_LEAST_0,
        "reward_scale": AT_LEAST_0,
        "kl_scale": AT_LEAST_0,
        "free_nats": AT_LEAST_0,
        "overshooting_distance": AT_LEAST_0,
        "overshooting_first_distance": AT_LEAST_1,
        "overshooting_kl_scale": AT_LEAST_0,
        "overshooting_reward_scale": AT_LEAST_0,
        "global_kl_scale": AT_LEAST_0,
    },
    "optim": {
        "learning_rate": POSITIVE,
        "adam_eps": POSITIVE,
        "grad_clip_norm": Bound(0, low_open=True, inf_ok=True),
        "warmup_updates": AT_LEAST_0,
    },
    "planner": {
        "horizon": AT_LEAST_1,
        "candidates": AT_LEAST_1,
        "top_k": AT_LEAST_1,
        "iterations": AT_LEAST_0,  # 0: random actions (the ablation)
        "train_noise": AT_LEAST_0,
        "test_noise": AT_LEAST_0,
    },
    "schedule": {
        "seed_episodes": AT_LEAST_1,
        "test_seed_episodes": AT_LEAST_1,  # the test phases score the model on them
        "collect_every_updates": AT_LEAST_1,
        "min_updates_per_decision": AT_LEAST_0,
        "test_every_updates": AT_LEAST_1,
        "test_batches": AT_LEAST_1,
        "test_episodes": AT_LEAST_1,
        "total_updates": AT_LEAST_0,
        "max_hours": Bound(0, low_open=True, inf_ok=True),
        "checkpoint_every_minutes": AT_LEAST_0,
        "max_env_steps": AT_LEAST_1,
        "final_eval_episodes": AT_LEAST_0,
    },
    "ddpg": {
        "hidden_units": AT_LEAST_1,
        "hidden_layers": AT_LEAST_0,
        "actor_lr": POSITIVE,
        "critic_lr": POSITIVE,
        "discount": UNIT,
        "batch_size": AT_LEAST_1,
        "updates_per_policy_step": POSITIVE,
        "tau": Bound(0, 1, low_open=True),
        "hard_update_every": AT_LEAST_1,
        "noise_std": AT_LEAST_0,
        "ou_theta": UNIT,
        "cnn_depth": AT_LEAST_1,
    },
    "dreamer": {
        "horizon": AT_LEAST_1,
        "discount": UNIT,
        "lambda_": UNIT,
        "units": AT_LEAST_1,
        "actor_layers": AT_LEAST_0,
        "value_layers": AT_LEAST_0,
        "actor_lr": POSITIVE,
        "value_lr": POSITIVE,
        "model_lr": POSITIVE,
        "adam_eps": POSITIVE,
        "grad_clip_norm": Bound(0, low_open=True, inf_ok=True),
        "init_std": POSITIVE,
        "mean_scale": POSITIVE,
        "min_std": AT_LEAST_0,
        "exploration_noise": AT_LEAST_0,
        "mode_samples": AT_LEAST_1,
        "entropy_scale": AT_LEAST_0,
    },
}
"""Every numeric setting, by section ("" = the top level) and field: what it may be. A value
outside its bound is a one-line :class:`UserError` naming the flag, before anything runs (a
zero cnn depth or test-episode count had ended in a traceback, a negative loss scale or clip
norm had trained silently). tests/test_config.py checks that every numeric field has one."""


def flag_name(section: str, name: str) -> str:
    """The command-line spelling of a setting: ``model.cnn-depth``, ``dreamer.lambda_``."""
    stem = name.rstrip("_").replace("_", "-") + "_" * (len(name) - len(name.rstrip("_")))
    return f"{section}.{stem}" if section else stem


def check_bounds(values: Any, section: str) -> None:
    """Raise :class:`UserError` for the first field of ``values`` (a config section, or the
    whole Config for ``section=""``) outside :data:`BOUNDS`; None (a default) always passes."""
    for name, bound in BOUNDS[section].items():
        value = getattr(values, name)
        if value is not None and not bound.admits(value):
            raise UserError(f"{flag_name(section, name)} must be {bound} (got {value})")


@dataclass(frozen=True)
class Config:
    """A whole run. ``planet train`` writes it to ``<run>/config.json``."""

    task: str = "cartpole-balance"
    """Task: a name of the table (config.TASKS), dmc:DOMAIN-TASK (any dm_control suite task),
    gym:ENV_ID (a gymnasium env with continuous actions) or py:package.module:factory (your env,
    docs/custom_envs.md); a+b for one agent on several dm_control tasks."""
    seed: int = 0
    """Seeds every random number generator of the run."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the networks run; auto = cuda if available."""
    algo: Literal["planet", "dreamer", "ddpg"] = "planet"
    """planet (world model + planning), dreamer (the same world model + a latent actor-critic)
    or ddpg (the model-free baseline)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)
    dreamer: DreamerConfig = field(default_factory=DreamerConfig)

    # ---- derived values (never stored separately) -------------------------------------------

    @property
    def spec(self) -> TaskSpec:
        return task_spec(self.task)

    @property
    def action_repeat(self) -> int:
        """Env steps per policy step, after the task default is applied."""
        repeat = self.env.action_repeat
        return self.spec.action_repeat if repeat is None else repeat

    @property
    def task_count(self) -> int:
        """Tasks one agent plays: 1, or n for a multi-task ``a+b+…``."""
        return len(self.task.split("+"))

    @property
    def episode_env_steps(self) -> int:
        steps = self.env.episode_env_steps
        return self.spec.episode_env_steps if steps is None else steps

    @property
    def episode_policy_steps(self) -> int:
        """Decisions per episode: ``episode_env_steps // action_repeat`` (original MaximumDuration)."""
        return self.episode_env_steps // self.action_repeat

    @property
    def updates_per_train_episode(self) -> int:
        """Updates between two collected train episodes: ``schedule.collect_every_updates``, or
        more where ``schedule.min_updates_per_decision`` asks for more on this task."""
        s = self.schedule
        per_decision = math.ceil(s.min_updates_per_decision * self.episode_policy_steps - 1e-9)
        return max(s.collect_every_updates, per_decision)

    @property
    def updates_per_test_phase(self) -> int:
        """Updates between two test phases: ``schedule.test_every_updates``, stretched as
        :attr:`updates_per_train_episode` is over ``collect_every_updates`` (the train episodes
        per test phase stay ``test_every_updates / collect_every_updates``). DDPG, which
        collects by policy steps, tests every ``test_every_updates``."""
        s, per_episode = self.schedule, self.updates_per_train_episode
        if self.algo == "ddpg" or per_episode == s.collect_every_updates:
            return s.test_every_updates
        return max(1, round(s.test_every_updates * per_episode / s.collect_every_updates))

    @property
    def variant(self) -> str:
        """The paper ablation this config runs: planet (RSSM), ssm, deterministic or random."""
        if self.algo == "ddpg":
            return f"ddpg-{self.ddpg.obs}"
        if self.algo == "dreamer":
            return "dreamer"
        if self.planner.iterations == 0:
            return "random"
        if self.model.kind == "ssm":
            return "ssm"
        return "deterministic" if self.model.mean_only else "planet"

    def validate(self) -> Config:
        """Check values a user can get wrong; raise :class:`UserError` with what to do."""
        check_types(self, "")
        for section in _SECTIONS:
            check_types(getattr(self, section), section)
        check_bounds(self, "")
        for section in _SECTIONS:
            check_bounds(getattr(self, section), section)
        task_spec(self.task)
        if self.action_repeat == 0 and self.spec.suite == "multi":
            defaults = ", ".join(f"{t} {task_spec(t).action_repeat}" for t in self.task.split("+"))
            raise UserError(
                f"the tasks of {self.task} repeat actions differently ({defaults}); "
                "one agent needs one: pass --env.action-repeat N"
            )
        checks: list[tuple[bool, str]] = [
            (self.episode_policy_steps >= 1, "env.episode-env-steps must be >= env.action-repeat"),
            (
                self.data.chunk_length <= self.episode_policy_steps + 1,
                f"data.chunk-length ({self.data.chunk_length}) exceeds the episode length "
                f"({self.episode_policy_steps + 1} rows incl. the reset frame); shorten it",
            ),
            (
                self.loss.free_nats_over in ("element", "batch"),
                "loss.free-nats-over must be element or batch",
            ),
            (
                self.loss.overshooting_distance == 0  # (>= 1 is its bound)
                or self.loss.overshooting_first_distance <= self.loss.overshooting_distance,
                "loss.overshooting-first-distance must be in 1..loss.overshooting-distance",
            ),
            (
                self.loss.overshooting_distance < self.data.chunk_length,
                "loss.overshooting-distance must be < data.chunk-length",
            ),
            (
                self.dreamer.compute_dtype in ("auto", "float32", "bfloat16"),
                "dreamer.compute-dtype must be auto, float32 or bfloat16",
            ),
            (
                self.planner.top_k <= self.planner.candidates,  # (>= 1 is its bound)
                f"planner.top-k ({self.planner.top_k}) must be in 1..planner.candidates "
                f"({self.planner.candidates})",
            ),
            (
                self.planner.compute_dtype in ("auto", "float32", "bfloat16"),
                "planner.compute-dtype must be auto, float32 or bfloat16",
            ),
            (
                self.model.compute_dtype in ("auto", "float32", "bfloat16"),
                "model.compute-dtype must be auto, float32 or bfloat16",
            ),
            (
                self.schedule.max_env_steps is None
                or self.schedule.max_env_steps
                > self.schedule.seed_episodes * self.episode_env_steps,
                f"schedule.max-env-steps must exceed the {self.schedule.seed_episodes} seed "
                f"episodes' {self.schedule.seed_episodes * self.episode_env_steps} env steps",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    # ---- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`; unknown keys are a user error (a config of another version)."""
        return _from_dict(cls, data)


def check_types(values: Any, section: str) -> None:
    """Raise :class:`UserError` for the first field of ``values`` (a config section, or the
    whole Config for ``section=""``) whose value is not of its declared type: what the command
    line and config.json already enforce, for configs made in Python (``override(cfg,
    seed=np.int64(1))`` or ``model={"kind": "gru"}`` would otherwise fail deep in a run, or
    never)."""
    hints = typing.get_type_hints(type(values))
    for f in dataclasses.fields(values):
        value, hint = getattr(values, f.name), hints[f.name]
        sub = _SECTIONS.get(f.name) if section == "" else None
        if sub is not None:
            if not isinstance(value, sub):
                raise UserError(f"{f.name} must be a {sub.__name__} (got {value!r})")
        elif not _has_type(value, hint):
            raise UserError(
                f"{flag_name(section, f.name)} must be {_type_text(hint)} (got {value!r})"
            )


def _type_text(hint: Any) -> str:
    """A field's type as a message says it: ``an int``, ``one of 'rssm', 'ssm'``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(h) for h in typing.get_args(hint))
    names = {int: "an int", float: "a number", bool: "True or False", str: "a string"}
    return names.get(hint, "None" if hint is type(None) else str(hint).replace("typing.", ""))


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise UserError(f"config has unknown field(s) {sorted(unknown)} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is Config else None
        if sub is not None and isinstance(value, dict):
            kwargs[name] = _from_dict(sub, value)
        elif sub is None and _has_type(value, hints[name]):
            kwargs[name] = value
        else:  # a hand-edited file: say which field, before a run works with it
            expected = "a section" if sub is not None else _type_text(hints[name])
            raise UserError(f"config field {name} is {value!r}, not {expected}")
    return cls(**kwargs)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's type (an int fits a float field)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, h) for h in typing.get_args(hint))
    if hint in (bool, str, type(None)):
        return type(value) is hint
    if hint is int:
        return type(value) is int
    if hint is float:  # numpy's float64 is a float (and JSON writes it); its float32 is not
        return type(value) is int or isinstance(value, float)
    return True


_SECTIONS: dict[str, type] = {
    name: kind
    for name, kind in typing.get_type_hints(Config).items()
    if dataclasses.is_dataclass(kind) and isinstance(kind, type)
}
"""Config's nested sections by field name (env, data, model, ..., ddpg, dreamer)."""


def override(cfg: Config, **sections: Any) -> Config:
    """``override(cfg, model={"belief_size": 100}, task="x")``: a new config, ``cfg`` untouched.
    A name Config does not have is a :class:`UserError` that says where it belongs (values are
    checked by :meth:`Config.validate`, which ``train`` runs)."""
    for name, value in sections.items():
        if name in _SECTIONS:
            if not isinstance(value, dict):
                raise UserError(
                    f"override: {name}= takes a dict of its fields, e.g. "
                    f"{name}={{{_field_names(_SECTIONS[name])[0]!r}: ...}} (got {value!r})"
                )
            for key in value:
                if key not in _field_names(_SECTIONS[name]):
                    raise UserError(f"override: {_unknown_field(key, name)}")
        elif name not in _field_names(Config):
            raise UserError(f"override: {_unknown_field(name, '')}")
    top = {k: v for k, v in sections.items() if k not in _SECTIONS}
    nested = {
        k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items() if k in _SECTIONS
    }
    return dataclasses.replace(cfg, **top, **nested)


def _field_names(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


def _unknown_field(name: str, section: str) -> str:
    """What to say of a field name Config lacks: the section that has it, or close names."""
    where = Config if not section else _SECTIONS[section]
    text = f"{where.__name__} has no field {name!r}"
    if section and name in _field_names(Config) and name not in _SECTIONS:
        return f"{text}; it is one of Config's own: override(cfg, {name}=...)"
    homes = [s for s, kind in _SECTIONS.items() if s != section and name in _field_names(kind)]
    if homes:
        return f"{text}; it belongs to " + " or ".join(f"{s}={{{name!r}: ...}}" for s in homes)
    close = difflib.get_close_matches(name, _field_names(where), n=3)
    if close:
        return f"{text}; did you mean {', '.join(close)}?"
    return f"{text}; its fields: {', '.join(_field_names(where))}"


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

PAPER = Config()
"""google-research/planet at HEAD (docs/original.md): every default above is the original's."""

CPU = override(
    PAPER,
    # Smaller networks, shorter chunks, fewer CEM candidates, for 2 cores. One preset for every
    # task: only the action repeat is per task (the paper's). What each value rests on: sizes
    # and the planner were tuned on cartpole-balance (BENCHMARKS.md, sessions 3-6); how they
    # do on the paper's six tasks at 100k env steps is docs/results/ (DMC-100k), the evidence
    # any change for another task has to be measured against. The horizon is in decisions (20
    # = 0.8 s of simulated time on cheetah/finger, 1 s on walker, 1.6 s on cartpole/cup/reacher).
    # The fast renderer: 6-11× faster frames, the same bodies, a different floor and background
    # (0.75-25 grey levels from physics.render on average by task: EnvConfig.exact_render);
    # every cpu-preset result (BENCHMARKS.md, docs/results/) was learnt on its frames. On exact
    # frames cheetah-run seed 1 scored 181 (fast frames: 88-209 over seeds 0-2; session 17).
    env={"exact_render": False},
    # 32 chunks per update on walker-walk, seeds 0-2: 274, 192, 214 = 227 ± 42 against the
    # preset's 215, 196, 197 = 203 ± 11 (sessions 25-26; docs/results/walker-batch.csv): above
    # PlaNet's published 224 on the mean, within the seeds' spread. Across the other tasks
    # (seed 0, docs/results/batch32.csv): cartpole-swingup 504 against 438, cheetah-run 310
    # against 313 — and cheetah at 32 took 87.7 min alone on a 2-core Zen 4 (session 27), over
    # the 75-minute budget of a run. So the preset keeps 16.
    data={"batch_size": 16, "chunk_length": 32},
    model={
        # The paper's latent sizes (200 / 30 / 200) on walker-walk, seed 0: 190 against 215
        # with these, 44 min quiet (session 24): not walker's lever at 100k env steps.
        "belief_size": 128,
        "state_size": 20,
        "hidden_size": 128,
        "cnn_depth": 16,
        "reward_layers": 2,
        "reward_units": 128,
        # bf16 encoder/decoder where this CPU runs it >= 1.2x faster: 0.33 -> 0.23 s/update on a
        # Zen 4; run 9 learnt as well as float32 (647 vs 600, seed 1; BENCHMARKS.md, session 6)
        "compute_dtype": "auto",
    },
    planner={
        # A longer look-ahead, bought with fewer candidates: on the same trained models horizon
        # 20 scored +50..150 over 12 on cartpole-balance, 30 and 40 less than 20, 1000
        # candidates × 10 iterations nothing; 100 candidates scored as 200 (50 lower) at half
        # the cost per action (BENCHMARKS.md, sessions 4 and 5). Checked on two of the paper's
        # tasks (trained models, 10 episodes each, session 17): walker-walk 140/192/178/128 at
        # horizon 10/15/20/30, finger-spin 138/343 at 10/20 — 20 is where walker's imagined
        # reward stops beating a constant guess (`planet inspect`'s reward drift).
        "candidates": 100,
        "top_k": 10,
        "horizon": 20,
        # Start each decision from the last plan shifted by one step and refit 3 times, instead
        # of 6 times from scratch: half the planning cost. On the same trained models it planned
        # as well or better (cartpole-swingup 400 vs 390, cheetah-run 88 vs 77, 10 episodes
        # each); runs trained with it: cartpole-swingup 443 in 33 min (the earlier planner:
        # 393 ± 78 over 3 seeds, 35-37 min), walker-walk 164 in 63 min (projected 84-92 with the
        # earlier planner). BENCHMARKS.md, sessions 8-9.
        "warm_start": True,
        "iterations": 3,
        # Test episodes rank candidates on sampled futures, as the original (and as collection
        # does). Prior means (test_imagination "mean") won +70..150 on cartpole-balance, the
        # task this preset was first tuned on, but across the paper's six tasks, same trained
        # models, 10 episodes each: finger-spin 54 -> 155, cup-catch 265 -> 591, cheetah-run
        # 103 -> 129 with samples; cartpole-swingup 476 -> 454, walker-walk 169 -> 159,
        # reacher-easy 274 -> 189 (bimodal 0/900 episodes). BENCHMARKS.md, session 10.
        # float32: bf16 rollouts planned measurably worse with this small model (BENCHMARKS.md),
        # and at one env's 100 candidates they were hardly faster (53-55 vs 56-70 ms per
        # decision, 1 thread of a Zen 4 shared with two runs; session 7): small matrices
        "compute_dtype": "float32",
    },
    # Dreamer (--algo dreamer): actor and value 200 units wide (the original's 400 is 2× its
    # world model's hidden size; ours is 128). Measured per update on a Zen 4 (session 10,
    # benchmarks/bench_dreamer.py): world model 0.31 s + behaviour 0.53 s at 400 units, 0.23 s
    # at 200, 0.15 s at 128; a decision 1.3-2.2 ms against CEM's 29 ms.
    # Soft returns at 0.1: the original's actor (0) locked at its action bounds on
    # cartpole-swingup and scored 246 (75 at action repeat 2); at 0.1, seed 0 of each task:
    # cartpole-swingup 364, cheetah-run 334, cup-catch 638 (Dreamer's published 326, 235, 246),
    # reacher-easy 46 (314; not learnt); at 100 updates per episode finger-spin 617 and
    # walker-walk 415 (341, 277; sessions 25, 28). The only paired comparisons are cartpole's,
    # both higher with the term (BENCHMARKS.md, sessions 19-22). Over more seeds (sessions
    # 28-34, docs/results/): cartpole 351 ± 92 (3), cheetah 308 ± 38 (3), finger 384 ± 204 (3),
    # walker 423 ± 28 (3), cup 311 ± 319 (3), reacher 94 ± 70 (3) — cup and reacher exploit the
    # small world model.
    dreamer={"units": 200, "entropy_scale": 0.1},
    schedule={
        # The original's 100 updates per planned episode, on every task: 9 500 updates in 100k
        # env steps. Against 50 per episode (this preset's until session 23), 3 seeds each:
        # walker-walk 203 ± 11 vs 171 ± 6, finger-spin 394 ± 85 vs 245 ± 82 (sessions 19-21),
        # cheetah-run 215 ± 85 vs 137 ± 64 (session 22), cup-catch 646 ± 312 vs 405 ± 240,
        # cartpole-swingup 494 ± 48 vs 451 ± 11, reacher-easy 317 ± 158 vs 211 ± 57 (sessions
        # 22-24): higher on every task's mean, on 13 of 18 seeds (one level).
        # 150 per episode on walker-walk, seed 0: 215 vs 215 at 100 (session 23): no more.
        # BENCHMARKS.md says what each run showed.
        "collect_every_updates": 100,
        # The original's test protocol in env steps: one noise-free episode per 10 train
        # episodes (10k env steps); the score is the final 10-episode eval. Tests cost ~10 % of
        # the planning time instead of 40 % (2 episodes every 5), which decides whether the
        # action-repeat-2 tasks (500 decisions per episode) fit 75 minutes.
        "test_every_updates": 1000,
        "test_episodes": 1,
        # The DMC-100k benchmark: the run ends when train_episodes/ hold 100k env steps.
        "max_env_steps": 100_000,
    },
)
"""Small enough to run the DMC-100k benchmark (100k env steps) on a 2-core CPU in at most about
75 minutes per task (docs/results/)."""

DEBUG = override(
    PAPER,
    env={"episode_env_steps": 80, "exact_render": False},
    data={"batch_size": 4, "chunk_length": 8},
    model={
        "belief_size": 16,
        "state_size": 4,
        "hidden_size": 16,
        "cnn_depth": 4,
        "reward_layers": 1,
        "reward_units": 16,
    },
    loss={"free_nats": 0.5},
    planner={"candidates": 16, "top_k": 4, "iterations": 2, "horizon": 3},
    schedule={
        "seed_episodes": 2,
        "test_seed_episodes": 1,
        "collect_every_updates": 3,
        "test_every_updates": 6,
        "total_updates": 12,
        "final_eval_episodes": 2,
    },
)
"""Tiny everything: a full train/collect/test cycle in seconds, for tests and smoke runs."""

PRESETS: dict[str, Config] = {"paper": PAPER, "cpu": CPU, "debug": DEBUG}
PresetName = Literal["paper", "cpu", "debug"]
DEFAULT_PRESET: PresetName = "cpu"
"""What every command starts from without ``--preset``: sized for a 2-core CPU."""


def preset(name: str) -> Config:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
