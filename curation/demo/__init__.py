"""Deterministic synthetic street scenes written in the real source formats.

The demo corpus lets every importer, plugin and pipeline run end to end on a machine with no
data and no network: ``draw`` holds the primitives, ``scene`` composes them into labelled
street scenes, and ``corpus`` writes NATIX parquet, ROADWork COCO, Roboflow exports, a miner
query log and the hidden ``truth.csv`` that scripted labelers and evaluations read.
"""
