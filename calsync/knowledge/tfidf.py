"""One TF-IDF feature block of the matcher (step 3 of `calsync.knowledge.matcher`), in plain Python:
answering a question needs neither numpy nor scipy, so `calsync match` starts without importing them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


class TfidfBlock:
    """One TF-IDF block (sublinear tf, smooth idf, L2 norm), like scikit-learn's, minus the import."""

    def __init__(self, documents: Sequence[Sequence[str]], offset: int, min_df: int) -> None:
        df: Counter[str] = Counter()
        for features in documents:
            df.update(set(features))
        kept = sorted(f for f, count in df.items() if count >= min_df)
        n = len(documents)
        self._set(kept, [math.log((1 + n) / (1 + df[f])) + 1.0 for f in kept], offset)

    def _set(self, kept: Sequence[str], idf: list[float], offset: int) -> None:
        self.index: dict[str, int] = {f: offset + i for i, f in enumerate(kept)}
        self.idf: list[float] = idf
        self.offset = offset

    @classmethod
    def restore(cls, kept: Sequence[str], idf: list[float], offset: int) -> TfidfBlock:
        """A block as `_save` stored it (its features in column order)."""
        block = cls.__new__(cls)
        block._set(kept, [float(value) for value in idf], int(offset))
        return block

    @property
    def size(self) -> int:
        return len(self.index)

    def row(self, features: Sequence[str], weight: float) -> tuple[list[int], list[float]]:
        counts: Counter[int] = Counter()
        index = self.index
        for feature in features:
            column = index.get(feature)
            if column is not None:
                counts[column] += 1
        if not counts:
            return [], []
        columns = list(counts)
        values = [(1.0 + math.log(c)) * self.idf[col - self.offset] for col, c in counts.items()]
        norm = math.sqrt(sum(v * v for v in values))
        return columns, [weight * v / norm for v in values]
