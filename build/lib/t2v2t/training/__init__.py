"""The training loop with its config, optimiser, objectives, checkpoints and loggers
(docs/architecture.md)."""
