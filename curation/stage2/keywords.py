"""Text normalisation and a noise-tolerant keyword matcher that turns OCR reads into text evidence.

OCR on small, compressed signs confuses O/0 and S/5, merges words ("ROADWORK") and splits a
phrase over lines ("LANE" / "CLOSED"). So reads are upper-cased, digit look-alikes inside words are
mapped to letters, every read is joined in reading order with spaces made optional, and each keyword
is found by approximate substring search (edit distance, Sellers' algorithm) with an error budget
proportional to its length. Each keyword carries a weight and a polarity; positive matches combine
noisy-OR into a score in [0, 1], and a multi-keyword rule says when the text alone is decisive.

Example:
    >>> from curation.stage2.keywords import text_evidence
    >>> ev = text_evidence(["R0AD W0RK", "AHEAD"], confidences=[0.9, 0.95])
    >>> [m.keyword for m in ev.matches], ev.decisive
    (['road work'], True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import ConfigError, InputError

_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "2": "Z", "3": "E", "4": "A", "5": "S", "6": "G", "7": "T", "8": "B",
                             "|": "I", "$": "S", "@": "A", "€": "E"})  # fmt: skip


def normalize_text(text: str) -> str:
    """Upper-case, map digit look-alikes inside words to letters, and keep only letters, digits, spaces.

    A token that mixes letters and digits ("R0AD", "DET0UR") is a misread word; a token of digits
    only ("50") is a number and stays one, so "SALE 50% OFF" does not turn into words.
    """
    tokens = []
    for raw in re.split(r"[^0-9A-Z|$@€]+", text.upper()):
        if not raw:
            continue
        token = raw.translate(_LOOKALIKES) if re.search(r"[A-Z]", raw) else raw
        tokens.append(re.sub(r"[^0-9A-Z]", "", token))
    return " ".join(t for t in tokens if t)


@dataclass(frozen=True)
class Keyword:
    """One vocabulary entry.

    Attributes:
        phrase: lower-case words as printed on signs; matched with spaces optional.
        weight: in (0, 1]; a perfect, confident read contributes this much evidence.
        polarity: +1 supports roadwork, -1 supports "not roadwork" (advert text on orange objects).
        whole_word: the match must start and end on word boundaries; short words need this so
            "SLOW" does not fire inside "SLOWLY".
    """

    phrase: str
    weight: float
    polarity: int = 1
    whole_word: bool = False

    def __post_init__(self) -> None:
        if not normalize_text(self.phrase):
            raise ConfigError(f"Keyword `phrase` must contain letters; got {self.phrase!r}.")
        if not 0.0 < self.weight <= 1.0:
            raise ConfigError(f"Keyword {self.phrase!r}: `weight` must be in (0, 1]; got {self.weight}.")
        if self.polarity not in (1, -1):
            raise ConfigError(f"Keyword {self.phrase!r}: `polarity` must be 1 or -1; got {self.polarity}.")

    @property
    def compact(self) -> str:
        return normalize_text(self.phrase).replace(" ", "")


DEFAULT_KEYWORDS: tuple[Keyword, ...] = (
    Keyword("road work", 0.95),
    Keyword("end road work", 0.7),  # the sign itself is a TTC sign (label rule), but the zone is ending
    Keyword("construction", 0.85),
    Keyword("lane closed", 0.9),
    Keyword("detour", 0.9),
    Keyword("workers ahead", 0.9),
    Keyword("men working", 0.9),
    Keyword("flagger", 0.85),
    Keyword("one lane road", 0.85),
    Keyword("caution", 0.5, whole_word=True),
    Keyword("slow", 0.4, whole_word=True),
    Keyword("sale", 0.5, polarity=-1, whole_word=True),
    Keyword("open", 0.3, polarity=-1, whole_word=True),
)
"""The seeds' vocabulary; negative entries are shop/advert words seen on orange distractors."""


@dataclass(frozen=True)
class KeywordConfig:
    """The vocabulary and the rule that turns matches into evidence.

    Attributes:
        keywords: vocabulary entries; phrases must be distinct.
        max_error_rate: edit operations allowed per character of the keyword (floored), so an
            8-letter keyword tolerates one error and a 10-letter one two; 4 letters tolerate none.
        min_match_strength: matches weaker than this (confidence x similarity) are ignored.
        decisive_score: a positive score at or above this decides on its own.
        min_keywords: ... or at least this many distinct positive keywords together with
        min_keywords_score: a score at or above this (two weak signs agreeing are decisive).
    """

    keywords: tuple[Keyword, ...] = DEFAULT_KEYWORDS
    max_error_rate: float = 0.2
    min_match_strength: float = 0.4
    decisive_score: float = 0.8
    min_keywords: int = 2
    min_keywords_score: float = 0.6

    def __post_init__(self) -> None:
        phrases = [k.compact for k in self.keywords]
        dupes = sorted({p for p in phrases if phrases.count(p) > 1})
        if dupes:
            raise ConfigError(f"`keywords` repeats phrases {dupes}; each phrase may appear once.")
        if not 0.0 <= self.max_error_rate < 0.5:
            raise ConfigError(f"`max_error_rate` must be in [0, 0.5); got {self.max_error_rate}.")
        for name in ("min_match_strength", "decisive_score", "min_keywords_score"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"`{name}` must be in [0, 1]; got {value}.")
        if self.min_keywords < 1:
            raise ConfigError(f"`min_keywords` must be >= 1; got {self.min_keywords}.")


@dataclass(frozen=True)
class KeywordMatch:
    """A keyword found in the text.

    Attributes:
        keyword: the vocabulary phrase.
        found: the normalised text it matched, with the word breaks as read.
        distance: edit distance between the keyword and `found` (spaces ignored).
        confidence: the lowest OCR confidence among the reads the match spans.
        strength: confidence x (1 - distance / length): how much this match is worth before weighting.
        polarity: the keyword's polarity.
    """

    keyword: str
    found: str
    distance: int
    confidence: float
    strength: float
    polarity: int


@dataclass(frozen=True)
class TextEvidence:
    """What the text says.

    Attributes:
        score: noisy-OR of weight x strength over positive matches, in [0, 1].
        against: the same over negative (advert) matches, in [0, 1].
        decisive: the positive evidence is strong enough to decide on its own (see KeywordConfig).
        matches: every match kept, strongest first.
        text: the normalised text that was searched.
    """

    score: float
    against: float
    decisive: bool
    matches: tuple[KeywordMatch, ...] = field(default_factory=tuple)
    text: str = ""

    @property
    def keywords(self) -> tuple[str, ...]:
        """Positive keywords found (what the App shows as "why")."""
        return tuple(dict.fromkeys(m.keyword for m in self.matches if m.polarity > 0))


def _approximate_spans(pattern: str, text: str, max_dist: int) -> list[tuple[int, int, int]]:
    """(start, end, distance) of substrings of `text` within `max_dist` edits of `pattern`.

    Sellers' algorithm: edit-distance DP where the match may start and end anywhere in the text;
    each cell carries the start of its best alignment so the span is known without a traceback.
    """
    m = len(pattern)
    prev = [(j, 0) for j in range(m + 1)]  # (cost, start) for text prefix of length 0, start at 0
    spans = []
    for i, ch in enumerate(text, start=1):
        cur = [(0, i)]
        for j in range(1, m + 1):
            sub = (prev[j - 1][0] + (pattern[j - 1] != ch), prev[j - 1][1])
            dele = (prev[j][0] + 1, prev[j][1])  # skip a text char
            ins = (cur[j - 1][0] + 1, cur[j - 1][1])  # skip a pattern char
            cur.append(min(sub, dele, ins, key=lambda c: (c[0], -c[1])))
        if cur[m][0] <= max_dist:
            spans.append((cur[m][1], i, cur[m][0]))
        prev = cur
    return spans


def _best_spans(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Collapse overlapping candidate spans to the best (fewest edits, then longest) of each cluster."""
    best: list[tuple[int, int, int]] = []
    for span in sorted(spans, key=lambda s: (s[2], -(s[1] - s[0]), s[0])):
        if all(span[1] <= b[0] or span[0] >= b[1] for b in best):
            best.append(span)
    return best


def match_keywords(
    texts: Sequence[str],
    confidences: Sequence[float] | None = None,
    *,
    config: KeywordConfig | None = None,
) -> list[KeywordMatch]:
    """Find vocabulary keywords in OCR reads given in reading order.

    Reads are joined so a phrase split over lines still matches; a longer keyword that covers a
    shorter one's text ("END ROAD WORK" over "ROAD WORK") claims it, so one sign is counted once.
    """
    cfg = config or KeywordConfig()
    confidences = [1.0] * len(texts) if confidences is None else list(confidences)
    if len(confidences) != len(texts):
        raise InputError(f"Got {len(texts)} texts but {len(confidences)} confidences.")
    # Compact text (no spaces) with, per character, its read index and word-boundary flags.
    chars: list[str] = []
    owner: list[int] = []
    starts: set[int] = set()
    ends: set[int] = set()
    for r, text in enumerate(texts):
        for word in normalize_text(text).split():
            starts.add(len(chars))
            chars.extend(word)
            owner.extend([r] * len(word))
            ends.add(len(chars))
    compact = "".join(chars)
    claimed: list[tuple[int, int]] = []
    matches: list[KeywordMatch] = []
    for kw in sorted(cfg.keywords, key=lambda k: -len(k.compact)):
        pattern = kw.compact
        budget = int(cfg.max_error_rate * len(pattern))
        for start, end, dist in _best_spans(_approximate_spans(pattern, compact, budget)):
            if kw.whole_word and (start not in starts or end not in ends):
                continue
            if any(start >= a and end <= b for a, b in claimed):
                continue
            conf = min(float(confidences[o]) for o in owner[start:end])
            strength = conf * (1.0 - dist / len(pattern))
            if strength < cfg.min_match_strength:
                continue
            claimed.append((start, end))
            found = "".join((" " + c) if k in starts and k > start else c for k, c in enumerate(compact[start:end], start))
            matches.append(KeywordMatch(kw.phrase, found, dist, conf, strength, kw.polarity))
    return sorted(matches, key=lambda m: -m.strength)


def text_evidence(
    texts: Sequence[str],
    confidences: Sequence[float] | None = None,
    *,
    config: KeywordConfig | None = None,
) -> TextEvidence:
    """Score OCR reads (one source, in reading order) as roadwork evidence with the multi-keyword rule.

    The same keyword read twice counts once, at its strongest.
    """
    cfg = config or KeywordConfig()
    return _score(match_keywords(texts, confidences, config=cfg), texts, cfg)


def evidence_from_reads(reads: Sequence[Any], *, config: KeywordConfig | None = None) -> TextEvidence:
    """Score OCR reads from several sources (objects with .text, .confidence, .source, e.g. TextBox).

    Each source (the whole image, each evidence view) is matched on its own and the best match per
    keyword wins: a view that cut a sign in half must not splice its fragments into the whole
    image's complete reading of the same sign.
    """
    cfg = config or KeywordConfig()
    groups: dict[str, list[Any]] = {}
    for r in reads:
        groups.setdefault(str(getattr(r, "source", "image")), []).append(r)
    matches = [
        m for group in groups.values() for m in match_keywords([r.text for r in group], [r.confidence for r in group], config=cfg)
    ]
    return _score(sorted(matches, key=lambda m: -m.strength), [r.text for r in reads], cfg)


def _score(matches: list[KeywordMatch], texts: Sequence[str], cfg: KeywordConfig) -> TextEvidence:
    weights = {k.phrase: k.weight for k in cfg.keywords}
    best: dict[str, KeywordMatch] = {}
    for m in matches:
        if m.keyword not in best or m.strength > best[m.keyword].strength:
            best[m.keyword] = m

    def noisy_or(polarity: int) -> float:
        miss = 1.0
        for m in best.values():
            if m.polarity == polarity:
                miss *= 1.0 - weights[m.keyword] * m.strength
        return 1.0 - miss

    score, against = noisy_or(1), noisy_or(-1)
    n_positive = sum(1 for m in best.values() if m.polarity > 0)
    decisive = score >= cfg.decisive_score or (n_positive >= cfg.min_keywords and score >= cfg.min_keywords_score)
    text = " ".join(normalize_text(t) for t in texts if normalize_text(t))
    return TextEvidence(score=score, against=against, decisive=decisive, matches=tuple(matches), text=text)
