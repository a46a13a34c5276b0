"""Inversion stage: PTI projection, pivotal tuning and the inversion cache."""
