"""Annotation files and videos -> verified, reproducible zstd WebDataset frame shards."""
