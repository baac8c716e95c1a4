#!/usr/bin/env python3
"""Write a docker-archive image tarball holding the host's static busybox.

Usage: busybox_image.py OUT.tar [NAME]   (NAME defaults to docker.io/library/busybox:test)

The image has /bin/busybox with every applet as a symlink, /etc/passwd and /etc/group, and empty
/tmp, /www, /proc, /sys, /dev. Tests drop it into <data-dir>/agent/images, where the agent imports
it: no registry is needed.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile


def entry(name, kind=tarfile.REGTYPE, mode=0o644, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def main():
    out = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "docker.io/library/busybox:test"
    busybox = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()

    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as layer:
        for d in ("bin", "etc", "dev", "proc", "sys", "www", "root", "var"):
            layer.addfile(*entry(d, tarfile.DIRTYPE, 0o755))
        layer.addfile(*entry("tmp", tarfile.DIRTYPE, 0o1777))
        layer.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                layer.addfile(*entry("bin/" + applet, tarfile.SYMTYPE, 0o777, link="busybox"))
        layer.addfile(*entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
        layer.addfile(*entry("etc/group", data=b"root:x:0:\nnobody:x:65534:\n"))
    layer = layer_buf.getvalue()
    diff_id = hashlib.sha256(layer).hexdigest()

    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": [diff_id + "/layer.tar"]}]).encode()

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tarfile.open(out, "w") as archive:
        for path, data in ((config_name, config), (diff_id + "/layer.tar", layer), ("manifest.json", manifest)):
            archive.addfile(*entry(path, data=data))


if __name__ == "__main__":
    main()
