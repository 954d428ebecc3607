"""Before/after on the SAME held-out pairs: count the pairs that flipped, and test the flips.

Two accuracies measured on the same items are paired: what carries the evidence is how many items
went from wrong to right (gained) and from right to wrong (lost). The exact McNemar test (a two-sided
sign test on those discordant items) asks whether gained and lost could be a fair coin's split. A
standard error of one proportion ignores the pairing and says nothing about a change. Every verdict
sentence a lab prints about "better" or "worse" comes from `PairedComparison.verdict`, never typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

ALPHA = 0.05


def sign_test_p(gained: int, lost: int) -> float:
    """Two-sided exact binomial p-value of `gained` successes in gained+lost fair-coin trials (exact McNemar)."""
    n = gained + lost
    if n == 0:
        return 1.0
    k = min(gained, lost)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedComparison:
    """Correct/incorrect per item, before and after, on the same items in the same order."""

    before: tuple[bool, ...]
    after: tuple[bool, ...]

    def __post_init__(self):
        if len(self.before) != len(self.after):
            raise ValueError(f"paired results need the same items: {len(self.before)} before, {len(self.after)} after")

    @classmethod
    def of(cls, before, after) -> "PairedComparison":
        return cls(tuple(bool(x) for x in before), tuple(bool(x) for x in after))

    @property
    def n(self) -> int:
        return len(self.before)

    @property
    def gained(self) -> int:
        return sum(not b and a for b, a in zip(self.before, self.after))

    @property
    def lost(self) -> int:
        return sum(b and not a for b, a in zip(self.before, self.after))

    @property
    def p_value(self) -> float:
        return sign_test_p(self.gained, self.lost)

    def verdict(self, what: str = "held-out accuracy", alpha: float = ALPHA) -> str:
        """One sentence: the counts, the flips, the test, and what may be concluded at level alpha."""
        b, a = sum(self.before), sum(self.after)
        counts = (f"{what}: {b}/{self.n} -> {a}/{self.n} ({self.gained} gained, {self.lost} lost; "
                  f"exact McNemar p = {self.p_value:.3g})")
        if self.gained == self.lost == 0:
            return f"{counts}: no item changed."
        if self.p_value < alpha:
            return f"{counts}: {'rose' if self.gained > self.lost else 'fell'} (significant at {alpha:g})."
        return (f"{counts}: no significant change at {alpha:g}; with {self.gained + self.lost} item{'s' if self.gained + self.lost != 1 else ''} flipping, "
                f"this run cannot tell the change from noise.")


def by_kind(kinds, before, after) -> dict[str, PairedComparison]:
    """The comparison split by item kind (e.g. 'wrong fact' vs 'wrong format' pairs)."""
    out: dict[str, tuple[list, list]] = {}
    for kind, b, a in zip(kinds, before, after):
        out.setdefault(kind, ([], []))
        out[kind][0].append(b)
        out[kind][1].append(a)
    return {kind: PairedComparison.of(b, a) for kind, (b, a) in sorted(out.items())}
