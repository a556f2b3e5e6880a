from __future__ import annotations

import pytest

from curation.errors import ConfigError
from curation.synth.admission import (
    CONFIDENT,
    NEAR_DUPLICATE,
    AdmissionConfig,
    Candidate,
    admit,
    child_split,
    confidently_right,
    min_hamming,
    hashes_to_array,
)


def _flip(h: str, bits: int) -> str:
    return f"{int(h, 16) ^ ((1 << bits) - 1):016x}"


def test_near_duplicates_of_existing_images_are_rejected():
    base = "a5a5a5a5a5a5a5a5"
    far = "5a5a5a5a5a5a5a5a"
    out = admit(
        [Candidate(_flip(base, 3), "no_roadwork"), Candidate(far, "no_roadwork")],
        [base, None],
        config=AdmissionConfig(max_hamming=6),
    )
    assert out[0].admitted is False and out[0].reason == NEAR_DUPLICATE and out[0].distance == 3
    assert out[1].admitted is True and out[1].distance == 64


def test_threshold_is_inclusive_and_configurable():
    base = "00000000000000ff"
    cand = [Candidate(_flip(base, 6), "roadwork")]
    assert admit(cand, [base], config=AdmissionConfig(max_hamming=6))[0].admitted is False
    assert admit(cand, [base], config=AdmissionConfig(max_hamming=5))[0].admitted is True


def test_duplicates_within_one_run_keep_the_first():
    h = "0123456789abcdef"
    out = admit([Candidate(h, "roadwork"), Candidate(h, "roadwork")], [], config=AdmissionConfig())
    assert [d.admitted for d in out] == [True, False]
    assert out[1].reason == NEAR_DUPLICATE


def test_confidently_right_images_are_rejected_only_with_a_scorer():
    cands = [Candidate("0" * 16, "no_roadwork"), Candidate("f" * 16, "roadwork"), Candidate("0f" * 8, "roadwork")]
    cfg = AdmissionConfig(max_hamming=0, confidence=0.9)
    out = admit(cands, [], config=cfg, scores=[0.05, 0.95, 0.2])
    assert [d.reason for d in out] == [CONFIDENT, CONFIDENT, None]  # the last one Stage-1 gets wrong: keep
    assert all(d.admitted for d in admit(cands, [], config=cfg))  # no scorer: nothing rejected for confidence
    off = AdmissionConfig(max_hamming=0, reject_confident=False)
    assert all(d.admitted for d in admit(cands, [], config=off, scores=[0.05, 0.95, 0.2]))


def test_empty_and_order():
    assert admit([], ["ff" * 8], config=AdmissionConfig()) == []
    assert min_hamming("00" * 8, hashes_to_array([])) is None
    assert confidently_right(0.5, "roadwork", 0.5) and not confidently_right(0.49, "roadwork", 0.5)


def test_random_weight_images_never_get_a_training_split():
    assert child_split("train", random_weights=False) == "train"
    assert child_split("val_synthetic", random_weights=False) == "val_synthetic"
    assert child_split("train", random_weights=True) is None
    assert child_split("val_synthetic", random_weights=True) is None
    with pytest.raises(ConfigError, match="'train' or 'val_synthetic'"):
        child_split("test", random_weights=False)


def test_config_validation():
    with pytest.raises(ConfigError, match=r"`max_hamming` parameter must be an int in \[0, 64\]"):
        AdmissionConfig(max_hamming=65)
    with pytest.raises(ConfigError, match="`confidence`"):
        AdmissionConfig(confidence=0.3)
    with pytest.raises(ConfigError, match="one per image"):
        admit([Candidate("0" * 16, "roadwork")], [], config=AdmissionConfig(), scores=[])
