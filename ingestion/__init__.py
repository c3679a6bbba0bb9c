"""Source connectors, raw landing, checkpoints, schema contracts, validation and quarantine."""
