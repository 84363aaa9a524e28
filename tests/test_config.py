"""Config: presets are valid, the paper preset is the original's, round trips are exact."""

import dataclasses
import math
import typing

import numpy as np
import pytest

from planet_torch.config import (
    BOUNDS,
    CPU,
    DEBUG,
    PAPER,
    PRESETS,
    TASKS,
    Config,
    check_bounds,
    flag_name,
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
    for name, needle in [
        (
            "cartpole-balance+",
            "a task name is missing around a '\\+'",
        ),  # had been "unknown task ''"
        ("a++b", "a task name is missing"),
        ("cartpole-balance+cartpole-balance", "give 2 to 10 different tasks"),
        ("cartpole-balance+gym:Pendulum-v1", "only dm_control tasks can be combined"),
    ]:
        with pytest.raises(UserError, match=f"^multi-task '.*': {needle}"):
            task_spec(name)


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


def _sections() -> dict[str, type]:
    """Config's own fields ("") and each section's dataclass, by section name."""
    hints = typing.get_type_hints(Config)
    return {"": Config} | {
        name: kind for name, kind in hints.items() if dataclasses.is_dataclass(kind)
    }


NUMERIC = [
    (section, name)
    for section, kind in _sections().items()
    for name, hint in typing.get_type_hints(kind).items()
    if {int, float} & set(typing.get_args(hint) or (hint,))
]
"""Every int or float setting (optional ones too) as (section, field)."""


def test_every_numeric_setting_has_a_bound():
    """A new number in the config must say what it may be (config.BOUNDS), or this fails."""
    declared = [(section, name) for section, bounds in BOUNDS.items() for name in bounds]
    assert sorted(NUMERIC) == sorted(declared)


def _outside(section: str, name: str) -> list[float]:
    """Values just outside the setting's bound, NaN and (where it is no "none") inf."""
    bound = BOUNDS[section][name]
    hint = typing.get_type_hints(_sections()[section])[name]
    is_float = float in (typing.get_args(hint) or (hint,))
    values = [bound.low if bound.low_open else bound.low - (0.5 if is_float else 1)]
    if math.isfinite(bound.high):
        values.append(bound.high + (0.5 if is_float else 1))
    if is_float:
        values.append(math.nan)
        if not bound.inf_ok:
            values.append(math.inf)
    return values


def _assert_refused(section: str, name: str, value: object, got: str) -> None:
    """``validate`` of DEBUG with ``value`` set stops with one line naming the flag."""
    cfg = override(DEBUG, **({name: value} if not section else {section: {name: value}}))
    with pytest.raises(UserError) as error:
        cfg.validate()
    message = str(error.value)
    assert message.startswith(f"{flag_name(section, name)} must be "), message
    assert got in message and "\n" not in message


@pytest.mark.parametrize(("section", "name"), NUMERIC, ids=[f"{s}.{n}" for s, n in NUMERIC])
def test_a_value_outside_its_bound_is_a_one_line_user_error(section: str, name: str):
    """Each bad value stops ``validate`` with the flag's own name, before anything runs; the
    bound's own edge passes. The presets above pass with every value they set."""
    for value in _outside(section, name):
        _assert_refused(section, name, value, f"(got {value})")
    bound = BOUNDS[section][name]
    edge = bound.low + (1e-9 if bound.low_open else 0)
    values = getattr(DEBUG, section) if section else DEBUG
    check_bounds(dataclasses.replace(values, **{name: edge}), section)  # no error
    if math.isfinite(bound.high):
        check_bounds(dataclasses.replace(values, **{name: bound.high}), section)
    if bound.inf_ok:  # a clip norm or time limit of inf: none
        check_bounds(dataclasses.replace(values, **{name: math.inf}), section)


FIELDS = [
    (section, f.name)
    for section, kind in _sections().items()
    for f in dataclasses.fields(kind)
    if not (section == "" and f.name in _sections())
]
"""Every setting of every section as (section, field)."""


@pytest.mark.parametrize(("section", "name"), FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_a_value_of_the_wrong_type_is_a_one_line_user_error(section: str, name: str):
    """What the command line and config.json refuse, a config made in Python is refused too,
    by ``validate`` (which ``train`` runs), with the flag's name: a string for a number, a
    number for a string or a choice, a float for an int, a numpy int."""
    hint = typing.get_type_hints(_sections()[section])[name]
    kinds = set(typing.get_args(hint) or (hint,)) - {type(None)}
    if typing.get_origin(hint) is typing.Literal:
        wrong: list[object] = [3, "no-such-choice"]
    elif kinds <= {str}:
        wrong = [3]
    elif kinds <= {bool}:
        wrong = [1, "yes"]
    elif kinds <= {int}:
        wrong = ["2", 2.0, True, np.int64(2)]
    elif kinds <= {float}:
        wrong = ["0.5", True, np.float32(0.5)]  # (np.float64 is a float: taken)
    else:  # a tuple of names (env.state_components): no fixed type to check
        assert typing.get_origin(hint) is tuple, hint
        return
    for value in wrong:
        _assert_refused(section, name, value, f"(got {value!r})")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sed": 1}, "Config has no field 'sed'; did you mean seed?"),
        ({"cnn_depth": 4}, "it belongs to model={'cnn_depth': ...} or ddpg="),
        ({"model": {"learning_rate": 1e-3}}, "belongs to optim={'learning_rate': ...}"),
        ({"model": {"seed": 1}}, "it is one of Config's own: override(cfg, seed=...)"),
        (
            {"model": {"cnn_dept": 1}},
            "ModelConfig has no field 'cnn_dept'; did you mean cnn_depth?",
        ),
        ({"model": {"zzz": 1}}, "its fields: kind, "),
        ({"model": 3}, "model= takes a dict of its fields"),
    ],
)
def test_override_names_where_a_setting_belongs(changes: dict, needle: str):
    with pytest.raises(UserError, match=r"^override: ") as error:
        override(DEBUG, **changes)
    assert needle in str(error.value), error.value


def test_flag_names_are_the_command_line_spellings():
    assert flag_name("model", "cnn_depth") == "model.cnn-depth"
    assert flag_name("dreamer", "lambda_") == "dreamer.lambda_"  # as tyro spells it
    assert flag_name("", "seed") == "seed"
