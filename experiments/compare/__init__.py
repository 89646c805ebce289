"""Vendor comparison: fine-tune one base on each vendor's data over paired seeds and compare
held-out answer losses (``run``), with the (arm, seed) training in ``arms``."""
