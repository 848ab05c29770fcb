#!/usr/bin/env python3
"""Write an OCI image archive (an OCI image layout in a tar) from layer tarballs.

    oci-archive.py --name teresa.local/pause:3.10 --config '{"Entrypoint": ["/pause"]}' \
        --output pause.tar layer1.tar [layer2.tar ...]

Layers are uncompressed tarballs, lowest first. --config is the image's "config"
object (Entrypoint, Cmd, Env, User, WorkingDir, ...). The index names the image
with the `io.containerd.image.name` annotation (full name, what `ctr images
import` uses) and `org.opencontainers.image.ref.name` (the tag). Standard
library only, so it runs with any Python 3 on the host.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

CHUNK = 1 << 20


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def add_blob_bytes(archive: tarfile.TarFile, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    add_bytes(archive, "blobs/sha256/" + digest.split(":", 1)[1], data)
    return digest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="full image name, e.g. teresa.local/stack:abc")
    parser.add_argument("--config", default="{}", help="JSON of the image config's `config` object")
    parser.add_argument("--output", required=True)
    parser.add_argument("--created", default="1970-01-01T00:00:00Z")
    parser.add_argument("layers", nargs="+")
    args = parser.parse_args()

    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    layer_descs = []
    diff_ids = []
    for layer in args.layers:
        digest = sha256_file(layer)
        diff_ids.append(digest)
        layer_descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": os.path.getsize(layer),
            }
        )

    image_config = {
        "created": args.created,
        "architecture": "amd64",
        "os": "linux",
        "config": json.loads(args.config),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": args.created, "created_by": "hack/cluster/images"} for _ in args.layers],
    }
    platform = {"architecture": "amd64", "os": "linux"}

    tmp = args.output + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as archive:
        add_bytes(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        for layer, desc in zip(args.layers, layer_descs):
            archive.add(layer, arcname="blobs/sha256/" + desc["digest"].split(":", 1)[1], recursive=False)
        config_bytes = json.dumps(image_config, sort_keys=True).encode()
        config_digest = add_blob_bytes(archive, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": layer_descs,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = add_blob_bytes(archive, manifest_bytes)
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "platform": platform,
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        add_bytes(archive, "index.json", json.dumps(index, sort_keys=True).encode())
    os.replace(tmp, args.output)
    print(manifest_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
