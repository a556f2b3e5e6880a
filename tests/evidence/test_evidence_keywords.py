"""Keyword matching: normalisation, OCR noise, word breaks, polarity and the multi-keyword rule."""

from __future__ import annotations

import pytest

from curation.errors import ConfigError, InputError
from curation.stage2.keywords import Keyword, KeywordConfig, match_keywords, normalize_text, text_evidence


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("R0AD W0RK", "ROAD WORK"),
        ("det0ur!", "DETOUR"),
        ("LANE:CL0SED", "LANE CLOSED"),
        ("SALE 50% OFF", "SALE 50 OFF"),  # a pure number stays a number
        ("  ", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("reads", "keyword"),
    [
        (["R0AD W0RK"], "road work"),
        (["DET0UR"], "detour"),
        (["LANE CL0SED"], "lane closed"),
        (["ROADWORK AHEAD"], "road work"),  # merged words
        (["ROADWORKAHEAD"], "road work"),  # merged with the next word too
        (["LANE", "CLOSED"], "lane closed"),  # split over two lines
        (["ONE LANE", "R0AD"], "one lane road"),
        (["MEN WORKNG"], "men working"),  # a dropped letter
        (["CONSTRUCTlON"], "construction"),  # l for I
        (["FLAGGER AHEAD"], "flagger"),
        (["WORKERS AHEAD"], "workers ahead"),
    ],
)
def test_noisy_reads_match(reads: list[str], keyword: str) -> None:
    assert keyword in text_evidence(reads).keywords


@pytest.mark.parametrize("shop", ["PIZZA", "SALE 50% OFF", "PHARMACY", "CAFE", "OPEN", "SLOWLY", "ROADHOUSE GRILL"])
def test_shop_text_is_not_roadwork(shop: str) -> None:
    ev = text_evidence([shop])
    assert ev.keywords == () and ev.score == 0.0 and not ev.decisive


def test_advert_words_count_against() -> None:
    ev = text_evidence(["SALE 50% OFF", "OPEN"])
    assert ev.against == pytest.approx(1 - (1 - 0.5) * (1 - 0.3))
    assert ev.score == 0.0


def test_longer_keyword_claims_its_text() -> None:
    matches = match_keywords(["END ROAD WORK"])
    assert [m.keyword for m in matches] == ["end road work"]
    # ...but a second, separate "ROAD WORK" sign still counts.
    both = text_evidence(["END ROAD WORK", "ROAD WORK AHEAD"])
    assert set(both.keywords) == {"end road work", "road work"}


def test_short_words_need_word_boundaries_and_exact_spelling() -> None:
    assert text_evidence(["SLOW"]).keywords == ("slow",)
    assert text_evidence(["SL0W"]).keywords == ("slow",)  # look-alike fixed before matching
    assert text_evidence(["SLOB"]).keywords == ()  # 4 letters tolerate no edit


def test_scores_hand_computed() -> None:
    ev = text_evidence(["DETOUR"], confidences=[0.8])
    assert ev.score == pytest.approx(0.9 * 0.8)
    assert not ev.decisive  # 0.72 < 0.8 and a single keyword
    one_error = text_evidence(["DETOVR"], confidences=[1.0])  # 1 edit of 6 letters
    assert one_error.matches[0].distance == 1
    assert one_error.score == pytest.approx(0.9 * (1 - 1 / 6))


def test_multi_keyword_rule() -> None:
    weak = text_evidence(["CAUTION"])
    assert weak.score == pytest.approx(0.5) and not weak.decisive
    pair = text_evidence(["CAUTION", "SLOW"])  # two weak keywords agreeing
    assert pair.score == pytest.approx(1 - 0.5 * 0.6) and pair.decisive
    strong = text_evidence(["ROAD WORK AHEAD"])
    assert strong.decisive and strong.score == pytest.approx(0.95)


def test_repeated_reads_count_once() -> None:
    once = text_evidence(["DETOUR"], [0.9])
    twice = text_evidence(["DETOUR", "DETOUR"], [0.9, 0.7])
    assert twice.score == pytest.approx(once.score)


def test_low_confidence_reads_are_ignored() -> None:
    assert text_evidence(["ROAD WORK"], confidences=[0.3]).keywords == ()


def test_custom_vocabulary_and_validation() -> None:
    cfg = KeywordConfig(keywords=(Keyword("bauarbeiten", 0.9),), decisive_score=0.5)
    assert text_evidence(["BAUARBElTEN"], config=cfg).decisive
    with pytest.raises(ConfigError, match="repeats"):
        KeywordConfig(keywords=(Keyword("detour", 0.9), Keyword("DETOUR", 0.5)))
    with pytest.raises(ConfigError, match="weight"):
        Keyword("detour", 1.5)
    with pytest.raises(ConfigError, match="polarity"):
        Keyword("detour", 0.5, polarity=0)
    with pytest.raises(InputError, match="confidences"):
        text_evidence(["A", "B"], confidences=[1.0])


def test_order_of_vocabulary_does_not_matter() -> None:
    reads = ["END ROAD WORK", "CAUTION", "SL0W", "LANE CLOSED"]
    forward = text_evidence(reads)
    backward = text_evidence(reads, config=KeywordConfig(keywords=tuple(reversed(KeywordConfig().keywords))))
    assert forward.score == pytest.approx(backward.score)
    assert set(forward.keywords) == set(backward.keywords)


def test_empty_input() -> None:
    ev = text_evidence([])
    assert (ev.score, ev.against, ev.decisive, ev.matches) == (0.0, 0.0, False, ())
