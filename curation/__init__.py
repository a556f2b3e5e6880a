"""Roadwork curation and active-learning platform for the NATIX StreetVision subnet."""

__version__ = "0.1.0"
