"""Feature declarations, the engine that computes them, and the feature store."""
