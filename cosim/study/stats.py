"""Statistics of the study: intervals of one accuracy, paired comparisons of two, the stop-at-chance rule.

Every variant of a network is evaluated on the same test images, in the same order, so two variants are
compared image by image (a *paired* design), not by whether their separate intervals overlap:

* ``wilson``            -- 95 % Wilson score interval of one accuracy k/n;
* ``mcnemar_exact``     -- exact two-sided McNemar test of two paired 0/1 outcome vectors: under the null
  hypothesis "both classifiers are equally accurate" the b discordant pairs where only A is right follow
  Binomial(b + c, 1/2) given the b + c discordant pairs; p = min(1, 2 P(X <= min(b, c)));
* ``paired_difference`` -- accuracy(A) - accuracy(B) on the same images with a 95 % interval, by
  Newcombe's hybrid score interval for paired proportions (Newcombe 1998, Statistics in Medicine 17:2635,
  method 10: the two Wilson intervals combined with the phi correlation of the pairs, its numerator
  continuity-corrected as Newcombe defines it: AD - BC - N/2 where AD - BC > N/2, 0 where 0 <= AD - BC <= N/2,
  AD - BC where it is negative). Deterministic (no resampling, no seed), never outside [-1, 1], always
  containing the point difference;
* ``compare``           -- both of the above plus a verdict "better" / "worse" / "no significant
  difference", judged by the exact McNemar test at the 5 % level (the interval is reported beside it; at
  the margin the two may disagree, as two different tests can);
* ``at_chance``         -- the early-stop rule of a cell: after at least ``CHANCE_MIN_IMAGES`` images its
  95 % Wilson upper bound lies below ``CHANCE_UPPER`` (20 %, twice CIFAR-10's chance level of 10 %).

Outcome vectors are stored in cell results as packed bits (``pack_bits`` / ``unpack_bits``: base64 of
``numpy.packbits``, 1250 bytes for 10,000 images).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
ALPHA = 0.05
#: early stop at chance: at least this many images, and the 95 % Wilson upper bound below CHANCE_UPPER
CHANCE_MIN_IMAGES = 200
CHANCE_UPPER = 0.20


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n."""
    if n <= 0:
        raise ValueError("Wilson interval of an empty sample")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..n={n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)


def at_chance(k: int, n: int) -> bool:
    """The stop-at-chance rule: ``n >= CHANCE_MIN_IMAGES`` and the 95 % upper bound of k/n below CHANCE_UPPER."""
    return n >= CHANCE_MIN_IMAGES and wilson(k, n)[1] < CHANCE_UPPER


def _as_bool(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of 0/1 outcomes, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must hold 0/1 outcomes only")
        a = a.astype(bool)
    return a


def discordant(a, b) -> tuple[int, int, int, int]:
    """(both right, only A right, only B right, both wrong) of paired outcome vectors."""
    a, b = _as_bool(a, "a"), _as_bool(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes of different lengths: {a.size} and {b.size}")
    return int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())


def mcnemar_exact(a, b) -> float:
    """Exact two-sided McNemar p-value of paired 0/1 outcomes (1.0 when no pair is discordant)."""
    _, only_a, only_b, _ = discordant(a, b)
    return mcnemar_exact_counts(only_a, only_b)


def mcnemar_exact_counts(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b (only A right) and c (only B right)."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    m = b + c
    if m == 0:
        return 1.0
    from scipy.stats import binom
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), m, 0.5)))


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float, float]:
    """(difference, low, high): accuracy(A) - accuracy(B) with Newcombe's hybrid score interval (method 10),
    phi's numerator continuity-corrected (Newcombe 1998; as Fagerland, Lydersen & Laake, *Statistical Analysis of
    Contingency Tables*, ch. 8, and Altman et al., *Statistics with Confidence*, p. 52, compute it). Without the
    correction two networks that agree on every image get a zero-width interval at 50 % accuracy."""
    a, b, c, d = both, only_a, only_b, neither
    n = a + b + c + d
    if n <= 0:
        raise ValueError("paired difference of an empty sample")
    p1, p2 = (a + b) / n, (a + c) / n
    diff = p1 - p2
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    den = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    cross = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = cross / math.sqrt(den) if den > 0 else 0.0
    dl2 = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    du2 = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    lo = max(-1.0, diff - math.sqrt(max(0.0, dl2)))
    hi = min(1.0, diff + math.sqrt(max(0.0, du2)))
    return diff, min(lo, diff), max(hi, diff)


def paired_difference(a, b) -> tuple[float, float, float]:
    """(difference, low, high) of accuracy(A) - accuracy(B) on the same images, 95 % Newcombe interval."""
    return newcombe_paired(*discordant(a, b))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of A against B on the same ``n`` images."""

    n: int
    diff: float          #: accuracy(A) - accuracy(B)
    low: float           #: 95 % interval of diff (Newcombe, paired)
    high: float
    only_a: int          #: images only A classifies right
    only_b: int          #: images only B classifies right
    p: float             #: exact two-sided McNemar p-value (NaN for an unpaired comparison)
    paired: bool = True  #: False: outcomes per image missing, the unpaired interval of ``compare_unpaired``
    #: (accuracy(A), accuracy(B)) on the paired images, where they are fewer than a cell's own (a cell run
    #: on more images than the other): its accuracy elsewhere in the report is on all of its images
    on_paired: tuple[float, float] | None = None

    @property
    def verdict(self) -> str:
        """"better" / "worse" (A against B: McNemar p < 0.05, or for an unpaired comparison the 95 %
        interval excluding 0) or "no significant difference"."""
        sig = self.p < ALPHA if self.paired else (self.low > 0 or self.high < 0)
        if sig and self.diff > 0:
            return "better"
        if sig and self.diff < 0:
            return "worse"
        return "no significant difference"

    @property
    def significant(self) -> bool:
        return self.verdict != "no significant difference"

    def text(self, points: bool = True) -> str:
        """'+3.10 points [+1.20, +5.00], p = 0.002 (n = 1000 paired)'."""
        s = 100.0 if points else 1.0
        head = f"{s * self.diff:+.2f} [{s * self.low:+.2f}, {s * self.high:+.2f}]{' points' if points else ''}"
        if not self.paired:
            return head + " (unpaired: no per-image outcomes)"
        both = (f": {100 * self.on_paired[0]:.2f} % and {100 * self.on_paired[1]:.2f} % on these images"
                if self.on_paired is not None else "")
        return head + f", McNemar p {_p_txt(self.p)} (n = {self.n} paired{both})"


def _p_txt(p: float) -> str:
    return "< 1e-4" if p < 1e-4 else f"= {p:.3g}"


def compare(a, b) -> Comparison:
    """Paired comparison of outcome vectors ``a`` and ``b`` (same images, same order)."""
    both, only_a, only_b, neither = discordant(a, b)
    diff, lo, hi = newcombe_paired(both, only_a, only_b, neither)
    return Comparison(n=both + only_a + only_b + neither, diff=diff, low=lo, high=hi, only_a=only_a, only_b=only_b,
                      p=mcnemar_exact_counts(only_a, only_b))


# ------------------------------------------------------------------------------------------- storage

def pack_bits(correct) -> str:
    """A 0/1 outcome vector as base64 text of its packed bits (``unpack_bits`` needs its length)."""
    return base64.b64encode(np.packbits(_as_bool(correct, "correct")).tobytes()).decode("ascii")


def unpack_bits(text: str, n: int) -> np.ndarray:
    """The boolean outcome vector of length ``n`` stored by ``pack_bits``."""
    raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size != (n + 7) // 8:
        raise ValueError(f"packed outcomes hold {raw.size} bytes, {n} images need {(n + 7) // 8}")
    return np.unpackbits(raw, count=n).astype(bool)


def balanced_indices(labels, n: int, classes: int = 10) -> np.ndarray:
    """Indices of ``n`` test images taken round robin over the classes, each class in its stored order:
    the first ``ceil(n / classes)`` (or ``floor``) images of every class. Where the labels are already
    class-interleaved (cosim's image-folder loading), this is ``0..n-1``."""
    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ValueError(f"{n} images asked of a test set of {len(labels)}")
    per = [np.flatnonzero(labels == c) for c in range(classes)]
    out: list[int] = []
    for i in range(max((len(p) for p in per), default=0)):
        for p in per:
            if i < len(p):
                out.append(int(p[i]))
                if len(out) == n:
                    return np.asarray(out, dtype=np.int64)
    return np.asarray(out, dtype=np.int64)


def describe_images(n: int, classes: int = 10, total: int = 10000) -> str:
    """How the report names a cell's images."""
    if n >= total:
        return f"all {total} CIFAR-10 test images"
    if n % classes == 0:
        return f"the first {n // classes} test images of each CIFAR-10 class ({n} images)"
    return f"the first {n} CIFAR-10 test images taken round robin over the classes (class-balanced)"


def newcombe_unpaired(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """(difference, low, high): k1/n1 - k2/n2 of two independent samples, Newcombe's square-and-add of the
    two Wilson intervals (Newcombe 1998, method 10 for independent proportions). The fallback of the report
    for cells that kept no per-image outcomes."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return d, max(-1.0, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)), min(1.0, d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def compare_unpaired(k1: int, n1: int, k2: int, n2: int) -> "Comparison":
    """A comparison of two accuracies without per-image outcomes: the verdict is "better" / "worse" where the
    95 % interval of the difference excludes 0 (no McNemar p: ``p`` is NaN, ``paired`` False)."""
    d, lo, hi = newcombe_unpaired(k1, n1, k2, n2)
    return Comparison(n=min(n1, n2), diff=d, low=lo, high=hi, only_a=-1, only_b=-1, p=float("nan"), paired=False)
