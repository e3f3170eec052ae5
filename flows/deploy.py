"""Prefect deployments of ganpipe: the entry points.

``ganpipe deploy`` registers the deployments of ``deploy/prefect.yaml`` (``deploy``, in
``flows/deployments.py``). ``python -m ganpipe_flows.deploy flow-run`` is the command of the
Kubernetes GPU job template, and ``python -m ganpipe_flows.deploy rank`` what it starts under
torchrun on a pod with several GPUs (``flows/gpu_flow_runs.py``). The flows folder installs as
the package ``ganpipe_flows``.
"""

from __future__ import annotations

import sys

from ganpipe_flows.deployments import DeployError, DeployResult, Registered, deploy
from ganpipe_flows.gpu_flow_runs import flow_run_main, rank_main

__all__ = ["DeployError", "DeployResult", "Registered", "deploy", "flow_run_main", "rank_main"]

COMMANDS = {"flow-run": flow_run_main, "rank": rank_main}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m ganpipe_flows.deploy {{{','.join(COMMANDS)}}}")
    COMMANDS[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
