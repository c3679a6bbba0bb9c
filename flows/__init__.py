"""Prefect flows: orchestration only, each reading like the architecture picture."""

from tideline.flows.hooks import explain_failures

explain_failures()  # in every process that runs a flow: the CLI, a worker, a deployment's run
