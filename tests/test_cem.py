"""CEM knows nothing about models: tested on objectives with known optima."""

import pytest
import torch

from planet_torch.planning import CEMIteration, cross_entropy_method


def quadratic(target: torch.Tensor):
    # actions [H, N, A] -> returns [N]; maximum 0 at actions == target [H, 1, A].
    return lambda actions: -((actions - target) ** 2).sum(dim=(0, 2))


def test_finds_maximum_of_concave_objective():
    target = torch.tensor([[[0.5, -0.25]], [[-0.7, 0.1]], [[0.0, 0.9]]])  # [H=3, 1, A=2]
    plan = cross_entropy_method(
        quadratic(target),
        horizon=3,
        action_size=2,
        candidates=500,
        top_k=50,
        iterations=10,
        generator=torch.Generator().manual_seed(0),
    )
    assert plan.shape == (3, 1, 2)
    torch.testing.assert_close(plan, target, atol=0.03, rtol=0)


def test_respects_action_bounds_when_optimum_is_outside():
    target = torch.full((4, 1, 1), 3.0)  # outside [-1, 1]: best reachable is the bound
    seen = []

    def objective(actions):
        seen.append(actions.clone())
        return quadratic(target)(actions)

    plan = cross_entropy_method(
        objective,
        horizon=4,
        action_size=1,
        candidates=100,
        top_k=10,
        iterations=5,
        low=-1.0,
        high=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    for actions in seen:
        assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert plan.max() <= 1.0 and plan.min() > 0.95


def test_nan_and_inf_never_win():
    def objective(actions):
        returns = -(actions**2).sum(dim=(0, 2))
        # Candidates with a positive first action "diverge": NaN or +inf, which must rank last.
        bad = actions[0, :, 0] > 0
        returns[bad] = torch.where(torch.rand(int(bad.sum())) < 0.5, torch.nan, torch.inf)
        return returns

    elites = []
    plan = cross_entropy_method(
        objective,
        horizon=2,
        action_size=1,
        candidates=200,
        top_k=20,
        iterations=4,
        generator=torch.Generator().manual_seed(2),
        on_iteration=elites.append,
    )
    assert torch.isfinite(plan).all()
    assert plan[0, 0, 0] <= 0.0  # every elite had a non-positive first action
    assert all(isinstance(e, CEMIteration) and not torch.isnan(e.returns).any() for e in elites)


def test_same_generator_seed_same_plan_and_batched_problems_are_independent():
    targets = torch.tensor([[[0.3]], [[-0.6]]]).reshape(1, 2, 1)  # two problems, H=1, A=1

    def objective(actions):  # [1, 2*J, 1]; problem-major columns
        j = actions.shape[1] // 2
        per_problem = torch.cat([targets[:, :1].expand(1, j, 1), targets[:, 1:].expand(1, j, 1)], 1)
        return -((actions - per_problem) ** 2).sum(dim=(0, 2))

    kwargs = dict(horizon=1, action_size=1, batch=2, candidates=300, top_k=30, iterations=8)
    a = cross_entropy_method(objective, generator=torch.Generator().manual_seed(3), **kwargs)
    b = cross_entropy_method(objective, generator=torch.Generator().manual_seed(3), **kwargs)
    c = cross_entropy_method(objective, generator=torch.Generator().manual_seed(4), **kwargs)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a, targets, atol=0.03, rtol=0)


def test_zero_iterations_returns_initial_mean():
    plan = cross_entropy_method(lambda a: a.sum(dim=(0, 2)), horizon=5, action_size=3, iterations=0)
    assert torch.equal(plan, torch.zeros(5, 1, 3))


@pytest.mark.parametrize("top_k", [1, 3])
def test_one_iteration_refits_as_a_worked_example(top_k):
    """The refit of one iteration, by hand from the candidates the objective saw: the elite are
    the top-k by return; mean = their mean; std = sqrt(population variance + 1e-6). A sample
    (unbiased) variance, a missing 1e-6 (k = 1: std 0.001, not 0 or NaN), or a refit from the
    wrong candidates all fail here."""
    seen = []

    def objective(actions):  # [H, N, A]: the return is the first action of the first dim
        seen.append(actions.clone())
        return actions[0, :, 0]

    mean, std = {}, {}

    def record(it):
        mean["cem"], std["cem"] = it.mean, it.std

    out = cross_entropy_method(
        objective,
        horizon=2,
        action_size=2,
        candidates=8,
        top_k=top_k,
        iterations=1,
        generator=torch.Generator().manual_seed(3),
        on_iteration=record,
    )
    actions = seen[0]  # [2, 8, 2]
    elite = actions[:, actions[0, :, 0].argsort(descending=True)[:top_k]]  # [2, k, 2]
    expected_mean = elite.sum(dim=1) / top_k
    squares = ((elite - expected_mean[:, None]) ** 2).sum(dim=1) / top_k  # population variance
    expected_std = (squares + 1e-6) ** 0.5
    assert torch.allclose(out[:, 0], expected_mean, atol=1e-6)
    assert torch.allclose(std["cem"][:, 0], expected_std, atol=1e-6)
    if top_k == 1:
        assert torch.allclose(std["cem"], torch.full_like(std["cem"], 1e-3))
