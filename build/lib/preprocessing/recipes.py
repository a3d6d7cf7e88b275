"""The paper's shard recipe per dataset: the builder's view of :mod:`t2v2t.recipes` (one table)."""

from __future__ import annotations

from t2v2t.recipes import RECIPES, DatasetRecipe, SplitRecipe, dataset_recipe, recipe

# The splits each dataset's release has (an unknown SPLIT= is refused, not built).
SPLITS: dict[str, tuple[str, ...]] = {name: row.splits for name, row in RECIPES.items()}

__all__ = ["RECIPES", "SPLITS", "DatasetRecipe", "SplitRecipe", "dataset_recipe", "recipe"]
