"""Published scores to compare with, at a budget of env steps (simulator
steps: a policy step counts action_repeat of them).

The DMC-100k / DMC-500k rows are Table 1 of Laskin et al. 2020, "CURL: Contrastive Unsupervised
Representations for Reinforcement Learning" (means over seeds; the PlaNet and Dreamer rows there
are the reference everyone quotes at these budgets). PlaNet's own Table 1 (Hafner et al. 2019,
after 1000 episodes = 1M env steps) is ``TaskSpec.paper_score`` in config.py.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "CURL (Laskin et al. 2020), Table 1"

DMC_TASKS: tuple[str, ...] = (
    "finger-spin",
    "cartpole-swingup",
    "reacher-easy",
    "cheetah-run",
    "walker-walk",
    "cup-catch",
)
"""The six tasks of PlaNet's Table 1, in the order the DMC-100k tables list them."""


@dataclass(frozen=True)
class Published:
    method: str
    env_steps: int
    scores: dict[str, float]


_ROWS = (  # method, env steps, scores in DMC_TASKS order
    ("PlaNet", 100_000, (136.0, 297.0, 20.0, 138.0, 224.0, 0.0)),
    ("Dreamer", 100_000, (341.0, 326.0, 314.0, 235.0, 277.0, 246.0)),
    ("PlaNet", 500_000, (561.0, 475.0, 210.0, 305.0, 351.0, 460.0)),
    ("Dreamer", 500_000, (796.0, 762.0, 793.0, 570.0, 897.0, 879.0)),
)
PUBLISHED: tuple[Published, ...] = tuple(
    Published(method, steps, dict(zip(DMC_TASKS, scores, strict=True)))
    for method, steps, scores in _ROWS
)


def published(task: str, max_env_steps: float | None = None) -> list[tuple[str, int, float]]:
    """(method, env steps, score) of every published score of ``task`` up to ``max_env_steps``."""
    return [
        (p.method, p.env_steps, p.scores[task])
        for p in PUBLISHED
        if task in p.scores and (max_env_steps is None or p.env_steps <= max_env_steps)
    ]


def task_rank(task: str) -> tuple[int, str]:
    """Sort key: the six DMC tasks in the tables' order first, then the others alphabetically."""
    return (DMC_TASKS.index(task), "") if task in DMC_TASKS else (len(DMC_TASKS), task)


def task_order(tasks: set[str] | list[str]) -> list[str]:
    """``tasks`` (without repeats) in :func:`task_rank` order."""
    return sorted(set(tasks), key=task_rank)
