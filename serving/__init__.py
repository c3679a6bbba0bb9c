"""Online features and predictions over HTTP (`tideline serve`)."""
