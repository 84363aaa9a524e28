"""Config: presets are valid, the paper preset is the original's, round trips are exact."""

import dataclasses

import pytest

from planet_torch.config import (
    CPU,
    DEBUG,
    PAPER,
    PRESETS,
    TASKS,
    Config,
    override,
    preset,
    task_spec,
)
from planet_torch.errors import UserError


def test_presets_validate_and_are_frozen():
    for name, cfg in PRESETS.items():
        assert cfg.validate() is cfg, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.model.belief_size = 1  # type: ignore[misc]


def test_paper_preset_is_the_original():
    # docs/original.md: every value here is read from google-research/planet at HEAD.
    assert (PAPER.data.batch_size, PAPER.data.chunk_length) == (50, 50)
    assert PAPER.env.exact_render and not CPU.env.exact_render  # physics.render's frames
    p = PAPER.planner
    assert (p.horizon, p.candidates, p.top_k, p.iterations) == (12, 1000, 100, 10)
    assert (p.train_noise, p.test_noise, p.warm_start) == (0.3, 0.0, False)
    # The original rolls one prior *sample* trajectory per candidate, in training and test.
    assert (p.imagination, p.test_imagination) == ("sample", "sample")
    s = PAPER.schedule
    assert (s.seed_episodes, s.test_seed_episodes) == (5, 5)
    assert (s.collect_every_updates, s.test_every_updates, s.test_batches, s.test_episodes) == (
        100,
        1000,
        1,
        1,
    )


def test_task_table_action_repeats_and_lengths():
    expected = {
        "cartpole-balance": 8,
        "cartpole-swingup": 8,
        "finger-spin": 2,
        "cheetah-run": 4,
        "cup-catch": 4,
        "walker-walk": 2,
        "reacher-easy": 4,
    }
    for name, repeat in expected.items():
        cfg = override(PAPER, task=name)
        assert cfg.action_repeat == repeat
        assert cfg.episode_env_steps == 1000
        assert cfg.episode_policy_steps == 1000 // repeat
    assert TASKS["car-racing"].suite == "gym" and TASKS["half-cheetah"].suite == "gym"
    assert TASKS["cartpole-swingup"].paper_score == 821.0


def test_unknown_task_lists_valid_ones():
    with pytest.raises(UserError, match="cartpole-swingup"):
        task_spec("cartpole-swingupp")
    with pytest.raises(UserError, match="unknown task"):
        override(PAPER, task="nope").validate()


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="top-k"):
        override(PAPER, planner={"top_k": 2000}).validate()
    with pytest.raises(UserError, match="chunk-length"):
        override(DEBUG, data={"chunk_length": 500}).validate()
    with pytest.raises(UserError, match="unknown preset"):
        preset("fast")


def test_json_round_trip_and_override_leaves_original():
    cfg = override(CPU, task="cheetah-run", model={"cell": "lstm"}, seed=3)
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert CPU.model.cell == "gru" and CPU.task == "cartpole-balance"
    with pytest.raises(UserError, match="unknown field"):
        Config.from_dict({**cfg.to_dict(), "bogus": 1})
