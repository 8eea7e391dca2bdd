"""Evaluation: Fréchet metrics (FVD with I3D, FID with InceptionV3), Inception Score, the UCF101 protocol.

Submodules are imported on use (`from vimi.eval.frechet import fvd`) so that importing `vimi.eval`
stays cheap for the grounding metrics that live beside them.
"""
