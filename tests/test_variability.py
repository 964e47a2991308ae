"""Per-rank variability (`simulator.system.variability`): known answers of the order
statistics, seeded draws, no jitter at cv 0, named slow GPUs and nodes, fleet checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy import integrate, stats

from simulator.core.errors import InputError
from simulator.system.variability import Jitter, Variability, max_of_normals


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def sigma_of(cv: float) -> float:
    """Log-sd of the mean-1 log-normal with coefficient of variation ``cv``."""
    return math.sqrt(math.log1p(cv * cv))


def expected_max_lognormal(n: int, cv: float) -> tuple[float, float]:
    """Mean and sd of the largest of ``n`` mean-1 log-normals with ``cv``, by adaptive quadrature
    over the standard normal: the maximum's density in z is ``n phi(z) Phi(z) ** (n - 1)``."""
    s = sigma_of(cv)
    mu = -0.5 * s * s

    def moment(k: int) -> float:
        f = lambda z: math.exp(k * (mu + s * z)) * n * stats.norm.pdf(z) * stats.norm.cdf(z) ** (n - 1)
        return integrate.quad(f, -12, 12, limit=200, epsabs=1e-12, epsrel=1e-10)[0]

    m1, m2 = moment(1), moment(2)
    return m1, math.sqrt(m2 - m1 * m1)


# --------------------------------------------------------------------------- max_of_normals


@pytest.mark.parametrize(("n", "expected"), [
    (1, 0.0),                              # the mean of one standard normal
    (2, 1 / math.sqrt(math.pi)),           # E max(Z1, Z2) = 1 / sqrt(pi)
    (3, 3 / (2 * math.sqrt(math.pi))),     # E max of three = 3 / (2 sqrt(pi))
    (5, 1.1629644736405196),               # tabulated (Harter 1961)
])
def test_the_mean_of_max_of_normals_is_the_expected_maximum(n, expected):
    g = rng(11)
    draws = np.array([max_of_normals(n, 1.0, g) for _ in range(40_000)])
    # the maximum's sd is below 1, so 5 standard errors are < 0.025
    assert draws.mean() == pytest.approx(expected, abs=0.025)


def test_max_of_normals_of_one_has_the_spread_of_one_normal():
    g = rng(3)
    draws = np.array([max_of_normals(1, 2.0, g) for _ in range(40_000)])
    assert draws.std() == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize(("n", "sigma"), [(0, 1.0), (-3, 1.0), (8, 0.0)])
def test_max_of_normals_of_nothing_or_no_spread_is_zero(n, sigma):
    assert max_of_normals(n, sigma, rng()) == 0.0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4096), sigma=st.floats(0.01, 100.0))
def test_max_of_normals_scales_with_sigma_and_grows_with_n(seed, n, sigma):
    # one uniform per draw: the same seed gives the same quantile level, so the draw is
    # proportional to sigma and does not decrease when there are more variables
    one = max_of_normals(n, 1.0, rng(seed))
    assert max_of_normals(n, sigma, rng(seed)) == pytest.approx(sigma * one, rel=1e-12, abs=1e-300)
    assert max_of_normals(n + 1, 1.0, rng(seed)) >= one
    assert max_of_normals(2 * n, 1.0, rng(seed)) >= one


# --------------------------------------------------------------------------- Jitter.max_moments


@pytest.mark.parametrize("cv", [0.01, 0.03, 0.1, 0.2, 0.5])
def test_max_moments_of_one_rank_are_the_log_normal_mean_and_cv(cv):
    mean, sd = Jitter(cv, rng()).max_moments(1)
    assert mean == pytest.approx(1.0, rel=1e-4)
    assert sd == pytest.approx(cv, rel=2e-3)


@pytest.mark.parametrize("cv", [0.01, 0.03, 0.1, 0.2, 0.5])
def test_max_moments_of_two_ranks_match_the_closed_form(cv):
    # E max(X1, X2) = 2 E[X Phi(Z)] = 2 exp(mu + s^2 / 2) Phi(s / sqrt 2) = 2 Phi(s / sqrt 2)
    mean, _ = Jitter(cv, rng()).max_moments(2)
    assert mean == pytest.approx(2 * stats.norm.cdf(sigma_of(cv) / math.sqrt(2)), rel=1e-4)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("cv", [0.01, 0.03, 0.2])
def test_max_moments_of_a_tp_group_match_quadrature(n, cv):
    # widths of a tensor-parallel group inside a node (the engine asks for TP x CP)
    mean, sd = Jitter(cv, rng()).max_moments(n)
    ref_mean, ref_sd = expected_max_lognormal(n, cv)
    assert mean == pytest.approx(ref_mean, rel=2e-4)
    assert sd == pytest.approx(ref_sd, rel=1e-2)


@pytest.mark.parametrize("n", [64, 128])
@pytest.mark.parametrize("cv", [0.03, 0.2])
def test_max_moments_of_wide_groups_keep_the_mean(n, cv):
    # TP x CP up to 8 x 16: the mean is still within 0.1 %; the sd is not (next test)
    mean, _ = Jitter(cv, rng()).max_moments(n)
    assert mean == pytest.approx(expected_max_lognormal(n, cv)[0], rel=1e-3)


@pytest.mark.xfail(strict=True, reason=(
    "the wanted precision (1e-5 in the mean, 1e-3 in the sd) does not hold for wide groups: the 4000-point midpoint rule in the quantile level "
    "puts the maximum of n ranks on the top ~4000/n points: at n = 128, cv = 0.01 the sd is 83 % "
    "too large, at n = 512, cv = 0.1 the mean is 0.19 % low; remove this marker once it holds"))
@pytest.mark.parametrize(("n", "cv"), [(128, 0.01), (512, 0.1)])
def test_max_moments_are_exact_to_1e_6_for_wide_groups(n, cv):
    mean, sd = Jitter(cv, rng()).max_moments(n)
    ref_mean, ref_sd = expected_max_lognormal(n, cv)
    assert mean == pytest.approx(ref_mean, rel=1e-5)
    assert sd == pytest.approx(ref_sd, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(cv=st.floats(0.005, 0.5), n=st.integers(1, 128))
def test_the_expected_slowest_rank_gets_slower_with_more_ranks(cv, n):
    jitter = Jitter(cv, rng())
    mean_n, sd_n = jitter.max_moments(n)
    mean_more, _ = jitter.max_moments(n + 1)
    assert mean_n >= 1.0 - 1e-4  # the slowest of n is on average no faster than one rank
    assert mean_more > mean_n
    assert sd_n >= 0.0


def test_max_of_draws_have_the_moments_of_the_maximum():
    cv, n = 0.1, 16
    jitter = Jitter(cv, rng(5))
    draws = np.array([jitter.max_of(n) for _ in range(40_000)])
    mean, sd = jitter.max_moments(n)
    assert draws.mean() == pytest.approx(mean, abs=5 * sd / math.sqrt(draws.size))
    assert draws.std() == pytest.approx(sd, rel=0.03)
    assert (draws > 0).all()


def test_many_and_mean_of_have_mean_one_and_the_stated_cv():
    cv = 0.2
    jitter = Jitter(cv, rng(9))
    factors = jitter.many(200_000)
    assert factors.shape == (200_000,)
    assert factors.mean() == pytest.approx(1.0, abs=5 * cv / math.sqrt(factors.size))
    assert factors.std() / factors.mean() == pytest.approx(cv, rel=0.02)
    means = np.array([jitter.mean_of(8) for _ in range(20_000)])
    assert means.mean() == pytest.approx(1.0, abs=0.005)
    assert means.std() == pytest.approx(cv / math.sqrt(8), rel=0.03)  # the mean of 8 independent ranks


# --------------------------------------------------------------------------- seeds, cv = 0


def test_the_same_seed_gives_the_same_draws():
    def draws(seed):
        j = Jitter(0.05, rng(seed))
        return [j.max_of(8), *j.many(4), j.mean_of(3), j.max_of(1), max_of_normals(5, 0.3, j.rng)]

    assert draws(42) == draws(42)
    assert draws(42) != draws(43)


def test_no_jitter_gives_factor_one_exactly_and_draws_nothing():
    g = rng(1)
    before = g.bit_generator.state
    jitter = Jitter(0.0, g)
    assert jitter.max_of(8) == 1.0
    assert jitter.mean_of(8) == 1.0
    assert jitter.max_moments(64) == (1.0, 0.0)
    assert (jitter.many(5) == 1.0).all()
    assert g.bit_generator.state == before  # cv = 0 consumes no randomness
    assert Variability().is_deterministic
    assert not Variability(compute_jitter_cv=0.01).is_deterministic


# --------------------------------------------------------------------------- slow GPUs and nodes


def test_slowdown_is_the_larger_of_the_gpu_and_its_node():
    v = Variability(slow_gpus={3: 1.5, 9: 1.1}, slow_nodes={1: 1.25})
    gpn = 8
    assert v.slowdown(0, gpn) == 1.0           # healthy
    assert v.slowdown(3, gpn) == 1.5           # named GPU on a healthy node
    assert v.slowdown(8, gpn) == 1.25          # every GPU of node 1
    assert v.slowdown(15, gpn) == 1.25
    assert v.slowdown(9, gpn) == 1.25          # node 1 is slower than GPU 9's own 1.1
    assert v.slowdown(16, gpn) == 1.0
    assert Variability(slow_gpus={9: 2.0}, slow_nodes={1: 1.25}).slowdown(9, gpn) == 2.0
    assert v.slowdown(2, 2) == 1.25            # with 2 GPUs per node, GPU 2 is on node 1


def test_indexes_inside_the_fleet_are_accepted():
    Variability(slow_gpus={0: 1.2, 63: 1.2}, slow_nodes={0: 1.1, 7: 1.3}).check_fleet(64, 8)
    Variability(slow_nodes={2: 1.1}).check_fleet(20, 8)  # a partial third node still counts


@pytest.mark.parametrize(("var", "field"), [
    ({"slow_gpus": {64: 1.2}}, "variability.slow_gpus.64"),
    ({"slow_gpus": {0: 1.2, 100: 1.5}}, "variability.slow_gpus.100"),
    ({"slow_nodes": {8: 1.2}}, "variability.slow_nodes.8"),
])
def test_indexes_outside_the_fleet_are_refused_naming_the_field(var, field):
    with pytest.raises(InputError) as err:
        Variability(**var).check_fleet(64, 8)
    assert err.value.field == field
    assert "not in the fleet" in str(err.value)
    assert "from 0 to" in str(err.value)


@pytest.mark.parametrize("var", [
    {"slow_gpus": {0: 0.9}},          # a slowdown is at least 1
    {"slow_nodes": {-1: 1.2}},        # indexes are not negative
    {"compute_jitter_cv": -0.1},
    {"compute_jitter_cv": 1.5},
    {"seed": -1},
    {"slow_gpus": {0: float("inf")}},
    {"jitter": 0.1},                  # unknown fields are refused
])
def test_bad_values_are_refused(var):
    with pytest.raises(ValidationError):
        Variability(**var)
