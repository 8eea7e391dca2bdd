"""Models: multimodal encoders, the VideoDiT backbone and autoencoders (import from the submodules)."""
