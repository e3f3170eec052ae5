import importlib

import yaml


def test_prefect_yaml_parses_and_every_entrypoint_imports():
    with open("deploy/prefect.yaml") as fh:
        spec = yaml.safe_load(fh)
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        assert hasattr(flow, "deploy"), f"{deployment['entrypoint']} is not a Prefect flow"
        assert deployment["work_pool"]["name"]
