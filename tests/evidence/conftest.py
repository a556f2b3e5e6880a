"""One OCR engine per test session: loading PP-OCRv4 costs about a second and ~100 MB.

No skip when `rapidocr_onnxruntime` is missing: these tests exist to exercise the real model, and
the backend's ConfigError names the extra to install.
"""

from __future__ import annotations

import pytest

from curation.stage2.ocr import RapidOcrBackend


@pytest.fixture(scope="session")
def rapid() -> RapidOcrBackend:
    return RapidOcrBackend()
