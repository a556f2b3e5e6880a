"""Deployable Stage-1 exports: the Hugging Face bundle, the StreetVision miner adapter, ONNX.

bundle (``export_bundle``: atomic, self-contained HF directory), card (README model card),
miner (detector class + YAML + query-logging hook written into the bundle), onnx (dynamo
export checked under onnxruntime), publish (``publish --dry-run``: repo layout + latency check).
``hf_template/`` holds the files copied into every bundle; they never import ``curation``.
"""
