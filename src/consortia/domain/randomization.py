"""Allocation algorithms: stratified permuted blocks and Pocock–Simon minimisation.

Pure functions of the scheme (:class:`~consortia.domain.study.Randomisation`), a secret
integer seed, the subject's factor levels and the allocations so far; no clock, no global
random state. The hub's randomisation service stores the seed and the allocations and asks
:meth:`Randomiser.next_allocation` for the next one; the same inputs always give the same
arm, so any allocation can be re-derived in an audit.

Definitions
-----------

*Permuted-block randomisation* (Rosenberger & Lachin, *Randomization in Clinical Trials*,
2nd ed., Wiley 2016, §3.5; Matts & Lachin, Control Clin Trials 1988;9:327-344): the
allocation sequence is a concatenation of blocks; a block of size ``b = m × s`` (``s`` the
sum of the arm ratios) holds exactly ``m × ratio`` allocations of each arm in a uniformly
random order (all orderings of the multiset equally likely). *Stratified*: one independent
sequence per stratum, a stratum being one combination of the levels of the stratification
factors. With several ``block_sizes`` each block's size is drawn uniformly from them
("random block sizes", so the last allocations of a block are harder to foresee).

Within a stratum, at any point of the list the ratio-weighted imbalance
``max_k n_k/r_k − min_k n_k/r_k`` is at most ``m = b/s`` of the largest block, so at most
half the largest block; at each block's end it is 0.

*Minimisation* (Pocock SJ, Simon R. Sequential treatment assignment with balancing for
prognostic factors in the controlled clinical trial. Biometrics 1975;31:103-115): for a new
subject with level ``r_i`` of factor ``i``, let ``x_ik`` be the number of earlier subjects with
that level on arm ``k``. For each candidate arm ``t`` the counts with the new subject added to
``t`` are divided by the arm ratios (the usual extension to unequal allocation, e.g. Han,
Enas & McEntegart, Stat Med 2009;28:3329-3346 — they note the unconditional allocation ratio
may drift from the target early on; the totals still follow the ratio), giving
``D_i(t) = range`` (max − min) or population ``variance`` of ``x_ik/r_k`` over ``k``; the total
imbalance is ``G(t) = Σ_i w_i D_i(t)``. The arms with the smallest ``G`` are preferred.

Where the paper leaves a choice, Consortia does this:

- **Biased coin.** With probability ``p`` (``probability``, default 0.8; Pocock & Simon's
  ``p_1``) the new subject goes to a preferred arm, otherwise to one of the others; this is
  their rule ``p_1 = p, p_k = (1 − p)/(N − 1)`` when one arm is preferred and ratios are 1.
- **Ties.** When every arm has the same ``G`` (the first subject, say), the arm is drawn at
  random with probabilities proportional to the ratios. When some but not all arms tie for
  the smallest ``G`` (three or more arms), the coin picks the tied set or the rest, and the
  arm within the set is drawn in proportion to the ratios.
- **Variance vs range.** Both are offered; they agree for two arms (variance = range²/4).
  Computations are exact (integer counts scaled by the least common multiple of the ratios,
  weights as exact fractions), so ties are real ties, never rounding artefacts.

Random streams and reproducibility
----------------------------------

Every random number comes from numpy's ``PCG64`` bit generator seeded through
``SeedSequence``, whose output numpy guarantees not to change between versions; only raw
64-bit draws are used (``random_raw``), turned into integers by rejection sampling and into
uniforms on [0, 1) by taking the top 53 bits, so numpy's ``Generator`` methods (whose
algorithms may change) play no part. The streams are:

- stratum ``S`` of a block scheme: ``SeedSequence(seed, spawn_key=(0, *w))`` where ``w`` are
  the eight big-endian 32-bit words of SHA-256 of the stratum's canonical JSON
  (``[["site","SG01"],["eligibility.disease_status","early_relapse"]]``). A stratum's list
  therefore depends only on the seed and its own key: adding a stratum, a site or a subject
  elsewhere never changes it, and extending a list only appends to it.
- allocation number ``n`` (1-based, counted over the whole trial) of minimisation:
  ``SeedSequence(seed, spawn_key=(1, n))``.

>>> from consortia.domain.templates import load_template
>>> study = load_template("cart-lbcl")
>>> randomiser = randomiser_for(study, seed=20261207)
>>> levels = {"site": "SG01", "eligibility.disease_status": "early_relapse"}
>>> first = randomiser.next_allocation(levels, [])
>>> first.arm in study.arms, first.number, first.block, first.block_size in (4, 6)
(True, 1, 1, True)
>>> randomiser.next_allocation(levels, []) == first
True
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from numpy.random import PCG64, SeedSequence

from consortia.domain.study import Randomisation, Study, factor_levels
from consortia.exceptions import Problem, ValidationError

__all__ = [
    "Allocation",
    "MinimisationRandomiser",
    "MinimisationTally",
    "PermutedBlockRandomiser",
    "PriorAllocation",
    "Randomiser",
    "Stratum",
    "all_strata",
    "block_list",
    "randomiser_for",
    "stratum_key",
    "stratum_text",
    "unmet_gates",
    "weighted_imbalance",
]

#: a stratum: (factor, level) pairs in the order of the scheme's ``strata``
Stratum = tuple[tuple[str, str], ...]

_BLOCKS_STREAM: Final = 0
_MINIMISATION_STREAM: Final = 1
_TWO_64: Final = 1 << 64


@dataclass(frozen=True, slots=True)
class Allocation:
    """One allocation. ``number`` is 1-based: the position in the stratum's list (blocks) or
    in the whole trial (minimisation); ``block`` and ``block_size`` only for block schemes."""

    arm: str
    number: int
    stratum: Stratum = ()
    block: int | None = None
    block_size: int | None = None


@dataclass(frozen=True, slots=True)
class PriorAllocation:
    """An allocation already made: the subject's factor levels and the arm it received."""

    levels: Mapping[str, str]
    arm: str


class _Stream:
    """Raw 64-bit draws of PCG64 turned into integers and uniforms without numpy's
    ``Generator`` (whose algorithms numpy may change between versions)."""

    def __init__(self, seed_sequence: SeedSequence) -> None:
        self._bits = PCG64(seed_sequence)

    def _raw(self) -> int:
        return int(self._bits.random_raw())

    def below(self, bound: int) -> int:
        """A uniform integer in [0, bound), by rejection sampling (no modulo bias)."""
        if bound <= 0:
            raise ValueError("bound must be positive")
        limit = _TWO_64 - (_TWO_64 % bound)
        while True:
            draw = self._raw()
            if draw < limit:
                return draw % bound

    def uniform(self) -> float:
        """A uniform float in [0, 1) from the top 53 bits of one draw."""
        return (self._raw() >> 11) * 2.0**-53

    def weighted(self, choices: Sequence[str], weights: Sequence[int]) -> str:
        """One of ``choices`` with probability proportional to its integer weight."""
        draw = self.below(sum(weights))
        for choice, weight in zip(choices, weights, strict=True):
            if draw < weight:
                return choice
            draw -= weight
        raise AssertionError("unreachable")  # pragma: no cover


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a randomisation seed is a non-negative integer (got {seed!r})")
    return seed


def _stratum_words(stratum: Stratum) -> tuple[int, ...]:
    canonical = json.dumps([list(pair) for pair in stratum], ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4))


def _stratum_stream(seed: int, stratum: Stratum) -> _Stream:
    spawn_key = (_BLOCKS_STREAM, *_stratum_words(stratum))
    return _Stream(SeedSequence(_check_seed(seed), spawn_key=spawn_key))


def block_list(
    ratios: Mapping[str, int],
    block_sizes: Sequence[int],
    seed: int,
    stratum: Stratum = (),
    *,
    blocks: int,
) -> tuple[Allocation, ...]:
    """The first ``blocks`` blocks of a stratum's permuted-block list.

    ``ratios`` maps each arm to its ratio (in the study's arm order); every block size must
    be a positive multiple of their sum. The list for ``blocks = k`` is a prefix of the list
    for any larger ``k``.

    >>> arms = [a.arm for a in block_list({"A": 1, "B": 1}, [4], seed=7, blocks=2)]
    >>> len(arms), arms[:4].count("A"), arms[4:].count("A")
    (8, 2, 2)
    """
    total = sum(ratios.values())
    if not ratios or any(r <= 0 for r in ratios.values()):
        raise ValueError("every arm needs a positive ratio")
    if not block_sizes or any(size <= 0 or size % total for size in block_sizes):
        raise ValueError(f"block sizes {list(block_sizes)} must be positive multiples of {total}")
    stream = _stratum_stream(seed, stratum)
    allocations: list[Allocation] = []
    for block in range(1, blocks + 1):
        size = block_sizes[stream.below(len(block_sizes))]
        per = size // total
        content = [arm for arm, ratio in ratios.items() for _ in range(ratio * per)]
        for i in range(size - 1, 0, -1):  # Fisher–Yates: every ordering equally likely
            j = stream.below(i + 1)
            content[i], content[j] = content[j], content[i]
        start = len(allocations)
        allocations.extend(
            Allocation(arm, start + position + 1, stratum, block, size)
            for position, arm in enumerate(content)
        )
    return tuple(allocations)


def weighted_imbalance(counts: Mapping[str, int], ratios: Mapping[str, int]) -> Fraction:
    """``max_k n_k/r_k − min_k n_k/r_k`` over the arms of ``ratios`` (exact).

    >>> weighted_imbalance({"A": 5, "B": 2}, {"A": 2, "B": 1})
    Fraction(1, 2)
    """
    scaled = [Fraction(counts.get(arm, 0), ratio) for arm, ratio in ratios.items()]
    return max(scaled) - min(scaled)


def stratum_key(scheme: Randomisation, levels: Mapping[str, str]) -> Stratum:
    """The stratum of a subject: its level of each factor, in the scheme's order."""
    return tuple((factor, levels[factor]) for factor in scheme.factor_names)


def _stratum_of(scheme: Randomisation, levels: Mapping[str, str]) -> Stratum:
    return tuple((factor, levels.get(factor, "")) for factor in scheme.factor_names)


def stratum_text(stratum: Stratum) -> str:
    """A stratum as compact JSON, as the hub stores it.

    >>> stratum_text((("site", "SG01"), ("eligibility.disease_status", "early_relapse")))
    '[["site","SG01"],["eligibility.disease_status","early_relapse"]]'
    """
    return json.dumps([list(pair) for pair in stratum], ensure_ascii=False, separators=(",", ":"))


def all_strata(study: Study) -> list[Stratum]:
    """Every stratum of a block scheme: each combination of its factors' levels, in order.

    >>> from consortia.domain.templates import load_template
    >>> len(all_strata(load_template("cart-lbcl")))
    4
    """
    scheme = study.randomisation
    if scheme is None or scheme.method != "permuted_blocks":
        return []
    levels = [factor_levels(study, factor)[0] for factor in scheme.strata]
    return [
        tuple(zip(scheme.strata, combination, strict=True))
        for combination in itertools.product(*levels)
    ]


def unmet_gates(scheme: Randomisation, recorded: Mapping[str, str | None]) -> list[str]:
    """The scheme's gates (``form.item``) not recorded as yes (``"1"``) in ``recorded``.

    >>> scheme = Randomisation(method="minimisation", gates=("consent.given", "elig.ok"))
    >>> unmet_gates(scheme, {"consent.given": "1", "elig.ok": "0"})
    ['elig.ok']
    """
    return [gate for gate in scheme.gates if recorded.get(gate) != "1"]


class Randomiser(ABC):
    """The next allocation of a study, given the subject's levels and the allocations so far.

    Build one with :func:`randomiser_for`. ``levels`` maps each factor of the scheme
    (``site`` or ``form.item``) to the subject's code; a missing or unknown level raises
    :class:`~consortia.exceptions.ValidationError` naming the factor.
    """

    def __init__(self, study: Study, seed: int) -> None:
        if study.randomisation is None:
            raise ValueError(f"study {study.study.id} has no randomisation scheme")
        if len(study.arms) < 2:
            raise ValueError("randomisation needs at least two arms")
        self.study = study
        self.scheme: Randomisation = study.randomisation
        self.seed = _check_seed(seed)
        self.ratios: dict[str, int] = {code: arm.ratio for code, arm in study.arms.items()}
        self.levels: dict[str, tuple[str, ...]] = {
            factor: factor_levels(study, factor)[0] for factor in self.scheme.factor_names
        }

    def check_levels(self, levels: Mapping[str, str]) -> Stratum:
        """The subject's stratum; a missing or unknown level raises ValidationError."""
        problems = []
        for factor, allowed in self.levels.items():
            level = levels.get(factor)
            if level is None:
                problems.append(Problem(factor, "a level is needed to randomise"))
            elif level not in allowed:
                problems.append(
                    Problem(factor, f"{level!r} is not one of its levels: {', '.join(allowed)}")
                )
        if problems:
            raise ValidationError(problems)
        return stratum_key(self.scheme, levels)

    @abstractmethod
    def next_allocation(
        self, levels: Mapping[str, str], history: Sequence[PriorAllocation]
    ) -> Allocation:
        """The allocation of the next subject (``history`` in allocation order)."""


class PermutedBlockRandomiser(Randomiser):
    """Stratified permuted blocks: the subject takes the next entry of its stratum's list."""

    def stratum_list(self, stratum: Stratum, blocks: int | None = None) -> tuple[Allocation, ...]:
        """The list of ``stratum`` (``blocks_per_stratum`` blocks unless told otherwise)."""
        return block_list(
            self.ratios,
            self.scheme.block_sizes,
            self.seed,
            stratum,
            blocks=self.scheme.blocks_per_stratum if blocks is None else blocks,
        )

    def next_allocation(
        self, levels: Mapping[str, str], history: Sequence[PriorAllocation]
    ) -> Allocation:
        stratum = self.check_levels(levels)
        used = sum(1 for prior in history if _stratum_of(self.scheme, prior.levels) == stratum)
        smallest = min(self.scheme.block_sizes)
        # a list never runs out: it is extended as far as needed (a prefix never changes)
        blocks = max(self.scheme.blocks_per_stratum, used // smallest + 1)
        return self.stratum_list(stratum, blocks)[used]


@dataclass
class MinimisationTally:
    """Counts per (factor, level, arm) of the allocations so far; add one at a time."""

    allocations: int = 0
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, levels: Mapping[str, str], arm: str, factors: Sequence[str]) -> None:
        for factor in factors:
            key = (factor, levels[factor], arm)
            self.counts[key] = self.counts.get(key, 0) + 1
        self.allocations += 1


class MinimisationRandomiser(Randomiser):
    """Pocock–Simon minimisation (see the module docstring for every choice made)."""

    def __init__(self, study: Study, seed: int) -> None:
        super().__init__(study, seed)
        # exact integer arithmetic: counts scaled by lcm(ratios), weights (as the decimals
        # written in the file) scaled by the lcm of their denominators
        lcm = math.lcm(*self.ratios.values())
        self._scale = {arm: lcm // ratio for arm, ratio in self.ratios.items()}
        exact = [Fraction(str(entry.weight)) for entry in self.scheme.factors]
        common = math.lcm(*(w.denominator for w in exact)) if exact else 1
        self._weights = [
            (entry.factor, int(w * common))
            for entry, w in zip(self.scheme.factors, exact, strict=True)
        ]

    def tally(self, history: Sequence[PriorAllocation]) -> MinimisationTally:
        tally = MinimisationTally()
        for prior in history:
            tally.add(prior.levels, prior.arm, self.scheme.factor_names)
        return tally

    def imbalances(self, tally: MinimisationTally, levels: Mapping[str, str]) -> dict[str, int]:
        """``G(t)`` for each candidate arm ``t``, times a positive constant (so exact integers).

        The constant is the same for every arm: counts are scaled by ``lcm(ratios)``, weights by
        the lcm of their denominators, and the variance by ``(number of arms)²``.
        """
        arms = list(self.ratios)
        n = len(arms)
        result: dict[str, int] = {}
        for candidate in arms:
            total = 0
            for factor, weight in self._weights:
                level = levels[factor]
                scaled = [
                    (tally.counts.get((factor, level, arm), 0) + (arm == candidate))
                    * self._scale[arm]
                    for arm in arms
                ]
                if self.scheme.imbalance == "range":
                    spread = max(scaled) - min(scaled)
                else:  # population variance × n²
                    spread = n * sum(y * y for y in scaled) - sum(scaled) ** 2
                total += weight * spread
            result[candidate] = total
        return result

    def choose(self, tally: MinimisationTally, levels: Mapping[str, str]) -> Allocation:
        """The next allocation from a tally of the allocations so far (fast path for runs)."""
        stratum = self.check_levels(levels)
        number = tally.allocations + 1
        stream = _Stream(SeedSequence(self.seed, spawn_key=(_MINIMISATION_STREAM, number)))
        imbalance = self.imbalances(tally, levels)
        best = min(imbalance.values())
        preferred = [arm for arm in self.ratios if imbalance[arm] == best]
        others = [arm for arm in self.ratios if imbalance[arm] != best]
        coin = stream.uniform()
        pool = preferred if not others or coin < self.scheme.probability else others
        arm = stream.weighted(pool, [self.ratios[a] for a in pool])
        return Allocation(arm, number, stratum)

    def next_allocation(
        self, levels: Mapping[str, str], history: Sequence[PriorAllocation]
    ) -> Allocation:
        return self.choose(self.tally(history), levels)


def randomiser_for(study: Study, seed: int) -> Randomiser:
    """The randomiser of ``study``'s scheme with the trial's secret ``seed``."""
    if study.randomisation is None:
        raise ValueError(f"study {study.study.id} has no randomisation scheme")
    if study.randomisation.method == "minimisation":
        return MinimisationRandomiser(study, seed)
    return PermutedBlockRandomiser(study, seed)
