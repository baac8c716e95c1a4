"""exec and port-forward through the Python `kubernetes` client (WebSocket, v4.channel.k8s.io).

Usage: stream_test.py KUBECONFIG NAMESPACE POD PORT
Prints EXEC:<output> and PF:<first bytes of an HTTP answer from PORT inside the pod>.
"""
import socket
import sys

from kubernetes import client, config
from kubernetes.stream import portforward, stream

kubeconfig, namespace, pod, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config.load_kube_config(kubeconfig)
api = client.CoreV1Api()

out = stream(api.connect_get_namespaced_pod_exec, pod, namespace,
             command=["sh", "-c", "echo exec-from-python"],
             stderr=True, stdin=False, stdout=True, tty=False)
print("EXEC:" + out.strip())

forward = portforward(api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
conn = forward.socket(port)
conn.settimeout(10)
conn.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
answer = b""
try:
    while len(answer) < 4096:
        chunk = conn.recv(4096)
        if not chunk:
            break
        answer += chunk
except (socket.timeout, ConnectionResetError):
    pass
forward.close()
print("PF:" + answer.decode(errors="replace").replace("\r\n", "\n"))
