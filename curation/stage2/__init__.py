"""Stage-2 evidence for the cascade: sign text (OCR + keywords), detector proposals, and routing.

FiftyOne-free and cheap to import: OCR engines load on first use. The dataset fields and the
operator call these functions.

Example:
    >>> from curation.stage2 import route, text_evidence
    >>> route(0.4, 0.6, text_evidence(["DET0UR"])).label
    'roadwork'
"""

from curation.stage2.detector_evidence import DetectorConfig, DetectorEvidence, detector_evidence
from curation.stage2.keywords import (
    DEFAULT_KEYWORDS,
    Keyword,
    KeywordConfig,
    KeywordMatch,
    TextEvidence,
    evidence_from_reads,
    match_keywords,
    normalize_text,
    text_evidence,
)
from curation.stage2.ocr import (
    EasyOcrBackend,
    EasyOcrConfig,
    OcrBackend,
    RapidOcrBackend,
    RapidOcrConfig,
    ReadConfig,
    TextBox,
    make_backend,
    merge_reads,
    read_text,
)
from curation.stage2.routing import (
    CascadeDecision,
    CascadeMetrics,
    DeferralCurve,
    RoutingConfig,
    cascade_metrics,
    deferral_curve,
    needs_stage2,
    plot_deferral_curve,
    route,
    route_many,
)

__all__ = [
    "DEFAULT_KEYWORDS",
    "CascadeDecision",
    "CascadeMetrics",
    "DeferralCurve",
    "DetectorConfig",
    "DetectorEvidence",
    "EasyOcrBackend",
    "EasyOcrConfig",
    "Keyword",
    "KeywordConfig",
    "KeywordMatch",
    "OcrBackend",
    "RapidOcrBackend",
    "RapidOcrConfig",
    "ReadConfig",
    "RoutingConfig",
    "TextBox",
    "TextEvidence",
    "cascade_metrics",
    "deferral_curve",
    "detector_evidence",
    "evidence_from_reads",
    "make_backend",
    "match_keywords",
    "merge_reads",
    "needs_stage2",
    "normalize_text",
    "plot_deferral_curve",
    "read_text",
    "route",
    "route_many",
    "text_evidence",
]
