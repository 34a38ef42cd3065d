"""Autoregressive models (notes ch. 3): FVSBN, NADE and MADE over binned coordinates (discrete.py), RNADE's
mixture conditionals (rnade.py)."""
