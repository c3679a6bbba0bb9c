"""How tideline runs: the CLI entry point, deployments and automations, worker helpers."""
