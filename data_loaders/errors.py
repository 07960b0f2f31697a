"""Bad-sample accounting: a bad sample is skipped, counted by reason and logged with its id; too many stop training.

Every problem found in a sample is a `BadSample` with a short reason key (for counting) and a message naming the
sample id, the file and the problem. `BadSampleTracker` keeps a sliding window of the last `window` samples
attempted and raises `DataError` as soon as more than `max_fraction` of that window is bad.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

logger = logging.getLogger("data_loaders")

# Reason keys, in the order `vivid data check` prints them.
REASONS: dict[str, str] = {
    "invalid_record": "manifest record malformed (bad JSON, missing or wrong field)",
    "no_caption": "add/modify record without a caption",
    "missing_file": "media or mask file missing or empty",
    "unreadable": "file cannot be decoded",
    "no_frames": "media or mask has no frames",
    "too_short": "fewer frames than one training clip needs",
    "length_mismatch": "mask and media have different frame counts",
    "size_mismatch": "mask and media have different sizes",
    "empty_mask": "mask empty in every frame (after decoding, resizing and cropping)",
    "mask_area": "mask area outside the allowed range for every augmentation",
    "no_background": "no free background region for a deletion mask",
}


class BadSample(Exception):
    """One unusable sample. `reason` is a key of REASONS; `str()` names the sample, the file and the problem."""

    def __init__(self, reason: str, detail: str, sample_id: str | None = None, path: str | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown bad-sample reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.sample_id = sample_id
        self.path = path
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"sample {self.sample_id or '?'}{where}: {self.detail} [{self.reason}]"

    def __str__(self) -> str:
        return self.message

    def with_context(self, sample_id: str | None = None, path: str | None = None) -> "BadSample":
        """Fill in the sample id / file where the raising code did not know them."""
        self.sample_id = self.sample_id or sample_id
        self.path = self.path or path
        self.args = (self.message,)
        return self

    def to_event(self) -> tuple[str, str, str]:
        return (self.sample_id or "?", self.reason, self.message)


class DataError(RuntimeError):
    """The data set is too broken to train on (or one batch slot could not be filled at all)."""


class BadSampleTracker:
    """Counts bad samples by reason and stops when the bad fraction of the last `window` samples is too high."""

    def __init__(self, max_fraction: float = 0.05, window: int = 200):
        self.max_fraction = max_fraction
        self.window = window
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad_in_window = 0
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.bad_total = 0
        self.last_bad: deque[str] = deque(maxlen=5)

    def _push(self, bad: bool) -> None:
        if len(self._recent) == self.window and self._recent[0]:
            self._bad_in_window -= 1
        self._recent.append(bad)
        self._bad_in_window += bad
        self.total += 1

    def good(self, n: int = 1) -> None:
        for _ in range(n):
            self._push(False)

    def bad(self, sample_id: str, reason: str, message: str) -> None:
        """Log and count one bad sample, then raise DataError if the window now holds too many."""
        logger.warning("skipping bad sample: %s", message)
        self.counts[reason] += 1
        self.bad_total += 1
        self.last_bad.append(message)
        self._push(True)
        if self._bad_in_window > self.max_fraction * self.window:
            raise DataError(
                f"too many bad samples: {self._bad_in_window} of the last {len(self._recent)} samples were bad "
                f"(limit {self.max_fraction:.1%} of {self.window}; counts by reason: {dict(self.counts)}). "
                f"Last: {self.last_bad[-1]}. Run `vivid data check` on the manifests to list them all."
            )

    def state(self) -> dict[str, int]:
        return dict(self.counts)
