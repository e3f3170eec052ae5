"""Flow runs on Kubernetes GPU pods: what ``python -m ganpipe_flows.deploy flow-run`` runs.

With one GPU it is ``prefect flow-run execute``. With several, and a flow that trains, it starts
torchrun: rank 0 executes the flow run, and every other rank waits until rank 0's train stage
joins the process group, trains beside it (same config, so the same model version), and exits.
The flow run stays one Prefect flow run (retries, artifacts, the retrain gate), only its training
is data-parallel.
"""

from __future__ import annotations

import os
import sys

from ganpipe_flows.deployments import prefect_client

TRAINING_FLOWS = ("pipeline", "retrain")  # entrypoint functions whose runs train a model


def _gpus() -> int:
    if os.environ.get("GPUS"):
        return int(os.environ["GPUS"])
    import torch

    return torch.cuda.device_count()


def _flow_run(flow_run_id: str, with_deployment: bool = False):
    from uuid import UUID

    with prefect_client() as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if not (with_deployment and run.deployment_id):
            return run, None
        return run, client.read_deployment(run.deployment_id)


def _execute_flow_run() -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect", "flow-run", "execute"])


def flow_run_main() -> None:
    """The GPU job's command: the flow run itself, under torchrun when it trains on >1 GPU."""
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id:
        sys.exit("PREFECT__FLOW_RUN_ID is not set: this command runs inside a Prefect flow run")
    gpus = _gpus()
    if gpus > 1:
        run, deployment = _flow_run(flow_run_id, with_deployment=True)
        function = (deployment.entrypoint or "").rsplit(":", 1)[-1] if deployment else ""
        if function in TRAINING_FLOWS and "config" in (run.parameters or {}):
            print(f"ganpipe: {gpus} GPUs, training data-parallel under torchrun", flush=True)
            os.execv(sys.executable, [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={gpus}", "-m", "ganpipe_flows.deploy", "rank",
            ])  # fmt: skip
    _execute_flow_run()


def rank_main() -> None:
    """One torchrun rank: rank 0 executes the flow run, the others train beside it."""
    if int(os.environ.get("RANK", "0")) == 0:
        _execute_flow_run()
    train_beside_flow_run(os.environ["PREFECT__FLOW_RUN_ID"])


def train_beside_flow_run(flow_run_id: str, poll_seconds: float = 5.0) -> None:
    """Join rank 0's training when its train stage starts it; leave when the flow run ends
    without training (retrain found a model for this data, or an earlier stage failed)."""
    import threading
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from ganpipe.config import validate_config
    from ganpipe.stages.train import pick_device, train
    from ganpipe.store import RunStore
    from ganpipe.training.distributed import local_device

    run, _ = _flow_run(flow_run_id)
    config = validate_config(run.parameters["config"], "flow parameter 'config'")
    device = local_device(pick_device(config.train.device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined = threading.Event()

    def join() -> None:
        # Rank 0 joins only after ingest and styles, which can take hours on a large dataset.
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(hours=12))
        joined.set()

    threading.Thread(target=join, daemon=True).start()
    while not joined.wait(poll_seconds):
        state = _flow_run(flow_run_id)[0].state
        if state is not None and state.is_final():
            print(f"ganpipe: flow run ended ({state.name}) without training here", flush=True)
            os._exit(0)  # the joining thread cannot be interrupted
    train(config, RunStore.from_config(config))
    dist.barrier()  # rank 0 waits here after exporting the model
    dist.destroy_process_group()
