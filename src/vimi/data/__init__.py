"""Data: media IO (PyAV, Pillow), Parquet manifests, WebDataset shards, task datasets, the synthetic world."""
