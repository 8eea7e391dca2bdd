"""Training: one `train(cfg)` for both stages, with EMA, atomic checkpoints and distributed helpers."""
