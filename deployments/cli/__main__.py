"""`python -m tideline.deployments.cli`: the `tideline` command."""

from tideline.deployments.cli import main

if __name__ == "__main__":
    main()
