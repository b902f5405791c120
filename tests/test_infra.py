"""The cluster recipes stay consistent with what the replayer needs on a worker."""
from __future__ import annotations

import os

import yaml

INFRA = os.path.join(os.path.dirname(__file__), "..", "infra")


def load(name):
    with open(os.path.join(INFRA, name)) as f:
        return yaml.safe_load(f)


def test_cluster_launcher_gives_workers_ptrace_and_pr_set_mm():
    c = load("ray-cluster.yaml")
    opts = " ".join(c["docker"]["run_options"])
    assert "SYS_PTRACE" in opts and "SYS_RESOURCE" in opts and "seccomp=unconfined" in opts
    assert c["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_kuberay_workers_get_the_capabilities():
    c = load("kuberay-cluster.yaml")
    assert c["kind"] == "RayCluster"
    worker = c["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    caps = worker["securityContext"]["capabilities"]["add"]
    assert {"SYS_PTRACE", "SYS_RESOURCE"} <= set(caps)
    assert worker["securityContext"]["seccompProfile"]["type"] == "Unconfined"
    import ray
    assert c["spec"]["rayVersion"].split(".")[0] == ray.__version__.split(".")[0]


def test_image_installs_the_package():
    with open(os.path.join(INFRA, "Dockerfile")) as f:
        text = f.read()
    assert "pip install" in text and "gcc" in text
