"""Experiments on curated data: model-backed scoring steps (``experiments.scoring``) and, as
the package grows, the vendor comparison and ablations. Imports from ``train``, ``curate`` core
and ``annotations``; nothing below imports from here."""
