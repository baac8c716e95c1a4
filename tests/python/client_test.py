"""The Python `kubernetes` client (PyPI) against a running server.

Run by tests/python_client.rs with KUBECONFIG pointing at the server's admin kubeconfig.
Prints one line per check and exits non-zero on the first failure.
"""
import os
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=os.environ["KUBECONFIG"])
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "pyclient"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    print(f"ok   {name}")


version = client.VersionApi().get_code()
check("version", version.major == "1" and version.minor == "32", version)

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
names = [n.metadata.name for n in core.list_namespace().items]
check("namespaces", ns in names and "kube-system" in names, names)

cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "c1", "labels": {"a": "b"}}, "data": {"k": "v"}})
check("create-configmap", cm.metadata.resource_version and cm.data == {"k": "v"})

got = core.read_namespaced_config_map("c1", ns)
check("read-configmap", got.metadata.uid == cm.metadata.uid)

patched = core.patch_namespaced_config_map("c1", ns, {"data": {"k2": "v2"}})
check("strategic-patch", patched.data == {"k": "v", "k2": "v2"}, patched.data)

listed = core.list_namespaced_config_map(ns, label_selector="a=b")
check("list-with-selector", [c.metadata.name for c in listed.items] == ["c1"])

try:
    core.read_namespaced_config_map("absent", ns)
    check("not-found", False)
except ApiException as e:
    check("not-found", e.status == 404 and "not found" in e.body)

events = []


def watcher(rv):
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["object"].metadata.name == "c2":
            w.stop()


t = threading.Thread(target=watcher, args=(listed.metadata.resource_version,))
t.start()
time.sleep(0.5)
core.create_namespaced_config_map(ns, {"metadata": {"name": "c2"}, "data": {}})
t.join(15)
check("watch", ("ADDED", "c2") in events, events)

dep = {
    "metadata": {"name": "d1"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "d1"}},
        "template": {"metadata": {"labels": {"app": "d1"}}, "spec": {"containers": [{"name": "c", "image": "busybox:acc"}]}},
    },
}
d = apps.create_namespaced_deployment(ns, dep)
check("create-deployment", d.spec.strategy.type == "RollingUpdate" and d.metadata.generation == 1)
scale = apps.patch_namespaced_deployment_scale("d1", ns, {"spec": {"replicas": 5}})
check("scale", scale.spec.replicas == 5)

core.delete_namespaced_config_map("c1", ns)
check("delete", "c1" not in [c.metadata.name for c in core.list_namespaced_config_map(ns).items])
print("all python client checks passed")
