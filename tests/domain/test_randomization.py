"""Allocation algorithms: permuted blocks and Pocock–Simon minimisation, checked against their
published definitions (see the docstring of consortia.domain.randomization)."""

from __future__ import annotations

import doctest
import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortia.domain import randomization
from consortia.domain.randomization import (
    Allocation,
    MinimisationRandomiser,
    PermutedBlockRandomiser,
    PriorAllocation,
    block_list,
    randomiser_for,
    weighted_imbalance,
)
from consortia.domain.study import Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.templates import load_template
from consortia.exceptions import ValidationError

TRIAL = """\
study:
  id: T1
  title: {en: Trial, zh: 试验}
  phase: "3"
  sponsor: Centre
  version: "1"
sites:
  S1: {name: One, country: SG, node: n1}
  S2: {name: Two, country: SG, node: n1}
  S3: {name: Three, country: CN, node: n2}
  S4: {name: Four, country: CN, node: n2}
arms:
  A: {label: {en: Drug, zh: 药物}, ratio: RATIO_A, code: X}
  B: {label: {en: Placebo, zh: 安慰剂}, ratio: 1, code: Y}
code_lists:
  status:
    - {code: refractory, label: {en: Refractory, zh: 难治}}
    - {code: relapse, label: {en: Relapse, zh: 复发}}
  age_band:
    - {code: young, label: {en: Under 50, zh: 50岁以下}}
    - {code: middle, label: {en: 50 to 69, zh: 50至69岁}}
    - {code: old, label: {en: 70 and over, zh: 70岁及以上}}
events:
  screening: {label: {en: Screening, zh: 筛选}, day: 0, forms: [eligibility]}
forms:
  eligibility:
    label: {en: Eligibility, zh: 入选}
    groups:
      main:
        items:
          status: {type: choice, code_list: status, label: {en: Status, zh: 状态}}
          age_band: {type: choice, code_list: age_band, label: {en: Age band, zh: 年龄段}}
"""
FACTORS = ("site", "eligibility.status", "eligibility.age_band")


def minimisation_trial(
    ratio_a: int = 1, probability: float = 0.8, imbalance: str = "range"
) -> Study:
    return load_study_text(
        TRIAL.replace("RATIO_A", str(ratio_a))
        + f"""\
randomisation:
  method: minimisation
  factors:
    - {{factor: site}}
    - {{factor: eligibility.status}}
    - {{factor: eligibility.age_band, weight: 0.5}}
  imbalance: {imbalance}
  probability: {probability}
""",
        "trial.yaml",
    )


def block_trial(ratio_a: int = 1, sizes: str = "[4, 6]") -> Study:
    return load_study_text(
        TRIAL.replace("RATIO_A", str(ratio_a))
        + f"""\
randomisation:
  method: permuted_blocks
  block_sizes: {sizes}
  strata: [site, eligibility.status]
  blocks_per_stratum: 10
""",
        "trial.yaml",
    )


def subjects(seed: int, n: int) -> list[dict[str, str]]:
    """Simulated subjects: unequal site sizes and factor prevalences (fixed per seed)."""
    rng = np.random.default_rng([2026, seed])
    sites = rng.choice(["S1", "S2", "S3", "S4"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    status = rng.choice(["refractory", "relapse"], size=n, p=[0.6, 0.4])
    ages = rng.choice(["young", "middle", "old"], size=n, p=[0.3, 0.5, 0.2])
    return [
        {"site": str(a), "eligibility.status": str(b), "eligibility.age_band": str(c)}
        for a, b, c in zip(sites, status, ages, strict=True)
    ]


def run_minimisation(study: Study, seed: int, people: Sequence[dict[str, str]]) -> list[str]:
    randomiser = randomiser_for(study, seed)
    assert isinstance(randomiser, MinimisationRandomiser)
    tally = randomiser.tally([])
    arms = []
    for levels in people:
        allocation = randomiser.choose(tally, levels)
        tally.add(levels, allocation.arm, FACTORS)
        arms.append(allocation.arm)
    return arms


def marginal_imbalance(people: Sequence[dict[str, str]], arms: Sequence[str]) -> int:
    """Σ over every level of every factor of |n_A − n_B| (Pocock & Simon's balance criterion)."""
    counts = Counter(
        (f, levels[f], arm) for levels, arm in zip(people, arms, strict=True) for f in FACTORS
    )
    levels_seen = {(f, levels[f]) for levels in people for f in FACTORS}
    return sum(abs(counts[(f, v, "A")] - counts[(f, v, "B")]) for f, v in levels_seen)


# --- permuted blocks -----------------------------------------------------------------------

ratio_sets = st.lists(st.integers(1, 3), min_size=2, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**128 - 1),
    ratios=ratio_sets,
    multiples=st.sets(st.integers(1, 4), min_size=1, max_size=3),
    blocks=st.integers(1, 8),
)
def test_within_a_stratum_the_weighted_imbalance_never_exceeds_half_the_largest_block(
    seed: int, ratios: list[int], multiples: set[int], blocks: int
) -> None:
    arms = {f"arm{i}": r for i, r in enumerate(ratios)}
    total = sum(ratios)
    sizes = sorted(m * total for m in multiples)
    allocations = block_list(arms, sizes, seed, (("site", "S1"),), blocks=blocks)

    counts: Counter[str] = Counter()
    # at most m = b/s (b the largest block, s the ratio sum ≥ 2), so at most b/2
    bound = Fraction(max(sizes), total)
    for allocation in allocations:
        counts[allocation.arm] += 1
        assert weighted_imbalance(counts, arms) <= bound <= Fraction(max(sizes), 2)
        if _ends_a_block(allocations, allocation):
            assert weighted_imbalance(counts, arms) == 0
    by_block: dict[int, Counter[str]] = {}
    for allocation in allocations:
        assert allocation.block_size in sizes
        by_block.setdefault(allocation.block or 0, Counter())[allocation.arm] += 1
    assert len(by_block) == blocks
    for block, content in by_block.items():
        size = sum(content.values())
        assert content == {arm: ratio * size // total for arm, ratio in arms.items()}, block
    assert [a.number for a in allocations] == list(range(1, len(allocations) + 1))


def _ends_a_block(allocations: Sequence[Allocation], allocation: Allocation) -> bool:
    index = allocation.number - 1
    return index + 1 == len(allocations) or allocations[index + 1].block != allocation.block


def test_a_list_is_reproducible_from_its_seed_and_another_seed_gives_another_list() -> None:
    arms = {"A": 1, "B": 1}
    first = block_list(arms, [4, 6], 123456789, (("site", "S1"),), blocks=30)

    assert block_list(arms, [4, 6], 123456789, (("site", "S1"),), blocks=30) == first
    other = block_list(arms, [4, 6], 123456790, (("site", "S1"),), blocks=30)
    assert [a.arm for a in other] != [a.arm for a in first]
    # another stratum under the same seed has its own list too
    elsewhere = block_list(arms, [4, 6], 123456789, (("site", "S2"),), blocks=30)
    assert [a.arm for a in elsewhere] != [a.arm for a in first]
    # extending a list only appends to it
    assert block_list(arms, [4, 6], 123456789, (("site", "S1"),), blocks=60)[: len(first)] == first


def test_the_list_is_pinned_so_a_library_upgrade_cannot_silently_change_it() -> None:
    arms = [a.arm for a in block_list({"A": 1, "B": 1}, [4, 6], 2026, (), blocks=3)]
    # recorded when the derivation was written; it must never change (the hub stores seeds)
    assert "".join(arms) == PINNED_LIST


PINNED_LIST = "BBABAAABBABAAB"  # blocks of 4, 4 and 6


def test_adding_a_stratum_leaves_every_other_stratum_list_unchanged() -> None:
    two_sites = block_trial()
    three_sites = load_study_text(
        TRIAL.replace("RATIO_A", "1").replace(
            "  S4: {name: Four, country: CN, node: n2}\n",
            "  S4: {name: Four, country: CN, node: n2}\n  S5: {name: Five, country: MY, node: n3}\n",
        )
        + "randomisation: {method: permuted_blocks, block_sizes: [4, 6], "
        "strata: [site, eligibility.status]}\n"
    )
    before = randomiser_for(two_sites, 99)
    after = randomiser_for(three_sites, 99)
    assert isinstance(before, PermutedBlockRandomiser)
    assert isinstance(after, PermutedBlockRandomiser)
    for site in ("S1", "S2", "S3", "S4"):
        for status in ("refractory", "relapse"):
            stratum = (("site", site), ("eligibility.status", status))
            assert before.stratum_list(stratum, 20) == after.stratum_list(stratum, 20)


def test_each_subject_takes_the_next_entry_of_its_own_stratum_list() -> None:
    study = block_trial(ratio_a=2, sizes="[3, 6]")
    randomiser = randomiser_for(study, 31337)
    assert isinstance(randomiser, PermutedBlockRandomiser)
    history: list[PriorAllocation] = []
    people = subjects(0, 200)
    for levels in people:
        allocation = randomiser.next_allocation(levels, history)
        history.append(PriorAllocation(levels, allocation.arm))

    for site in ("S1", "S2", "S3", "S4"):
        for status in ("refractory", "relapse"):
            stratum = (("site", site), ("eligibility.status", status))
            taken = [
                prior.arm
                for prior in history
                if prior.levels["site"] == site and prior.levels["eligibility.status"] == status
            ]
            listed = [a.arm for a in randomiser.stratum_list(stratum, 40)]
            assert taken == listed[: len(taken)]
    # a list never runs out: 10 blocks per stratum are printed, the 200th subject still gets one
    assert len(history) == 200


def test_ten_thousand_subjects_in_blocks_follow_the_ratio_within_the_derived_bound() -> None:
    """For two arms n_A − N·r_A/s = r_A·r_B·(n_A/r_A − n_B/r_B)/s, and within a stratum the
    weighted imbalance is at most m = (largest block)/s; so over S strata
    |n_A − N·r_A/s| ≤ S·r_A·r_B·m/s: 8·1·1·3/2 = 12 for 1:1 in blocks of 4 or 6, and
    8·2·1·2/3 ≈ 10.7 for 2:1 in blocks of 3 or 6 (0.12 % of 10,000)."""
    people = subjects(1, 10_000)
    for ratio_a, sizes, bound in ((1, "[4, 6]", 12.0), (2, "[3, 6]", 32 / 3)):
        randomiser = randomiser_for(block_trial(ratio_a, sizes), 4242)
        assert isinstance(randomiser, PermutedBlockRandomiser)
        per_stratum = Counter((p["site"], p["eligibility.status"]) for p in people)
        n_a = 0
        for (site, status), n in per_stratum.items():
            stratum = (("site", site), ("eligibility.status", status))
            arms = [a.arm for a in randomiser.stratum_list(stratum, n // 3 + 1)][:n]
            n_a += arms.count("A")
        assert abs(n_a - 10_000 * ratio_a / (ratio_a + 1)) <= bound


# --- minimisation ------------------------------------------------------------------------


def test_the_imbalance_is_pocock_and_simons_g_on_ratio_weighted_counts() -> None:
    """Hand-worked: earlier subjects S1/refractory/young → A, S1/relapse/old → B,
    S2/refractory/young → A (ratio 2:1, so counts are divided by 2 and 1; scale lcm = 2).
    New subject S1/refractory/middle. Counts at its levels (A, B): site S1 (1, 1),
    refractory (2, 0), middle (0, 0). Weights 1, 1, 0.5 (scaled by 2: 2, 2, 1).
    Range, to A: S1 (2/2, 1) → 0; refractory (3/2, 0) → 3/2; middle (1/2, 0) → 1/2;
    G(A) = 0 + 3/2 + 1/4 = 7/4. To B: S1 (1/2, 2) → 3/2; refractory (1, 1) → 0; middle
    (0, 1) → 1; G(B) = 3/2 + 0 + 1/2 = 2. Scaled by lcm(2, 1) = 2 and weights × 2: 7 and 8."""
    study = minimisation_trial(ratio_a=2)
    randomiser = randomiser_for(study, 1)
    assert isinstance(randomiser, MinimisationRandomiser)

    def levels(site: str, status: str, age: str) -> dict[str, str]:
        return {"site": site, "eligibility.status": status, "eligibility.age_band": age}

    history = [
        PriorAllocation(levels("S1", "refractory", "young"), "A"),
        PriorAllocation(levels("S1", "relapse", "old"), "B"),
        PriorAllocation(levels("S2", "refractory", "young"), "A"),
    ]
    new = levels("S1", "refractory", "middle")
    assert randomiser.imbalances(randomiser.tally(history), new) == {"A": 7, "B": 8}
    # variance of two values is range²/4: G(A) = 9/16 + 0.5·1/16 = 19/32 and
    # G(B) = 9/16 + 0.5·1/4 = 22/32; scaled by lcm² = 4, weights × 2 and n² = 4: 19 and 22
    variance = randomiser_for(minimisation_trial(ratio_a=2, imbalance="variance"), 1)
    assert isinstance(variance, MinimisationRandomiser)
    assert variance.imbalances(variance.tally(history), new) == {"A": 19, "B": 22}


@pytest.mark.parametrize("ratio_a", [1, 2])
def test_ten_thousand_subjects_by_minimisation_follow_the_ratio_and_balance_the_margins(
    ratio_a: int,
) -> None:
    """Ratio tolerance: minimisation is at least as close to the ratio as simple
    randomisation, so we allow simple randomisation's 4 standard deviations,
    4·√(N·p·(1−p)) = 200 for 1:1 and 189 for 2:1 (N = 10,000, p = r_A/s); in practice the
    difference is a few subjects (5000/5000 and 6665/3335 when written). For 1:1, the margins
    Σ over levels |n_A − n_B| on the same subjects: minimisation 8, seeded simple
    randomisation 314; the test asks below 1/10."""
    people = subjects(7, 10_000)
    arms = run_minimisation(minimisation_trial(ratio_a), 777, people)
    n_a = arms.count("A")
    p = ratio_a / (ratio_a + 1)
    assert abs(n_a - 10_000 * p) <= 4 * math.sqrt(10_000 * p * (1 - p))
    # the ratio-weighted imbalance of the totals stays small (observed: ≤ a handful)
    assert abs(n_a / ratio_a - arms.count("B")) <= 10
    if ratio_a == 1:
        simple = np.random.default_rng(777).choice(["A", "B"], size=10_000)
        minimised = marginal_imbalance(people, arms)
        assert minimised < marginal_imbalance(people, [str(a) for a in simple]) / 10


def test_minimisation_balances_margins_far_better_than_simple_randomisation() -> None:
    """Over 20 seeds × 2,000 simulated subjects (4 sites, 2 statuses, 3 age bands; 9 levels),
    the mean Σ over levels of |n_A − n_B| was 180.5 under simple randomisation (each level
    ~ √(2n/π)) and 14.6 under minimisation with p = 0.8 when written; the test asks < 1/5 of
    simple, minimisation < 30 and simple > 100.
    Simple randomisation's imbalance grows like √N while minimisation's stays bounded, so the
    gap only widens at 10,000 subjects (checked above for one seed)."""
    study = minimisation_trial(1)
    minimised, simple = [], []
    for seed in range(20):
        people = subjects(100 + seed, 2_000)
        minimised.append(marginal_imbalance(people, run_minimisation(study, seed, people)))
        coin = np.random.default_rng([seed, 1]).choice(["A", "B"], size=len(people))
        simple.append(marginal_imbalance(people, [str(a) for a in coin]))
    assert np.mean(minimised) < np.mean(simple) / 5
    assert np.mean(minimised) < 30 < 100 < np.mean(simple)


@pytest.mark.parametrize("probability", [0.8, 0.65, 1.0])
def test_the_biased_coin_picks_the_minimising_arm_with_probability_p(probability: float) -> None:
    """One earlier subject on A; the next one with the same levels is better on B. Over 4,000
    independent seeds, the share on B is p within 4 binomial standard deviations,
    4·√(p(1−p)/4000) (0.025 for p = 0.8); with a complete tie (no earlier subject) the share
    on A is 1/2 within 4·√(1/4 /4000) = 0.032."""
    study = minimisation_trial(1, probability)
    levels = {"site": "S1", "eligibility.status": "relapse", "eligibility.age_band": "old"}
    history = [PriorAllocation(levels, "A")]
    draws = 4_000
    on_b = sum(
        randomiser_for(study, seed).next_allocation(levels, history).arm == "B"
        for seed in range(draws)
    )
    assert abs(on_b / draws - probability) <= 4 * math.sqrt(probability * (1 - probability) / draws)
    tied_on_a = sum(
        randomiser_for(study, seed).next_allocation(levels, []).arm == "A" for seed in range(draws)
    )
    assert abs(tied_on_a / draws - 0.5) <= 4 * math.sqrt(0.25 / draws)


def test_in_a_two_to_one_trial_the_first_subject_prefers_the_larger_arm() -> None:
    """Counts divided by the ratios: to A gives |1/2 − 0| = 1/2 per factor, to B |0 − 1| = 1,
    so A minimises and is chosen with p = 0.8 (within 4·√(0.16/3000) = 0.029); with two arms
    and ratios 2:1 a complete tie cannot occur (it would need n_A − 2·n_B = 1/2)."""
    study = minimisation_trial(2)
    levels = {"site": "S2", "eligibility.status": "refractory", "eligibility.age_band": "young"}
    draws = 3_000
    on_a = sum(
        randomiser_for(study, seed).next_allocation(levels, []).arm == "A" for seed in range(draws)
    )
    assert abs(on_a / draws - 0.8) <= 4 * math.sqrt(0.16 / draws)


def test_minimisation_is_reproducible_from_the_seed_and_the_sequence() -> None:
    study = minimisation_trial(1)
    people = subjects(3, 300)
    first = run_minimisation(study, 55, people)

    assert run_minimisation(study, 55, people) == first
    assert run_minimisation(study, 56, people) != first
    randomiser = randomiser_for(study, 55)
    history = [PriorAllocation(levels, arm) for levels, arm in zip(people, first, strict=True)]
    # the hub asks with the whole history: the same arm as the incremental run
    for n in (0, 1, 17, 150, 299):
        allocation = randomiser.next_allocation(people[n], history[:n])
        assert (allocation.arm, allocation.number) == (first[n], n + 1)


def test_a_missing_or_unknown_level_is_refused_naming_the_factor() -> None:
    randomiser = randomiser_for(minimisation_trial(1), 5)
    with pytest.raises(ValidationError) as caught:
        randomiser.next_allocation({"site": "S9", "eligibility.status": "relapse"}, [])
    assert [str(p) for p in caught.value.problems] == [
        "<input>: site: 'S9' is not one of its levels: S1, S2, S3, S4",
        "<input>: eligibility.age_band: a level is needed to randomise",
    ]


def test_the_cart_template_randomises_in_blocks_of_four_or_six_per_site_and_status() -> None:
    study = load_template("cart-lbcl")
    randomiser = randomiser_for(study, 20261207)
    assert isinstance(randomiser, PermutedBlockRandomiser)
    stratum = (("site", "SH01"), ("eligibility.disease_status", "primary_refractory"))
    allocations = randomiser.stratum_list(stratum)
    assert len({a.block for a in allocations}) == 30
    assert {a.block_size for a in allocations} == {4, 6}
    assert Counter(a.arm for a in allocations)["car_t"] * 2 == len(allocations)


def test_the_module_examples_run() -> None:
    failures, tried = doctest.testmod(randomization)
    assert tried > 0
    assert failures == 0
