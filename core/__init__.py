"""Project-wide pieces every package shares: the settings object and the error family."""
