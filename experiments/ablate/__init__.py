"""Ablations: data recipes for SFT and pretraining (``data``, ``pretrain``) and model
architecture (``arch``)."""
