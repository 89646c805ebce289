from curate.pipeline.step import REGISTRY, Filter, GlobalStep, Step, build_step, register

__all__ = ["REGISTRY", "Filter", "GlobalStep", "Step", "build_step", "register"]
