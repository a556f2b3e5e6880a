"""Files copied verbatim into every exported bundle (never this ``__init__``).

``configuration_roadwork.py``, ``modeling_roadwork.py`` and ``dinov3_plain.py`` (DINOv3 in plain torch,
so transformers ≥ 4.45 suffices) are the bundle's remote code,
``roadwork_predict.py`` its one-function entry, ``miner/roadwork_detector.py`` the StreetVision
detector. None of them may import ``curation``: a bundle must run without the platform. The
platform imports them from here only to build the bundle's config and check its weights.
"""
