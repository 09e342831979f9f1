"""The images for real: both Dockerfiles built with Docker, and scans run in containers.

Marked ``containers``. They need a running Docker daemon and, when no base image is given, root and
debootstrap to make the local Debian base (``resources/container_base.sh``, cached by content hash). Outside
CI a missing piece skips them with the reason; under ``CI=true`` it fails them. ``SKYSCAN_TEST_BASE_IMAGE``
names a base to use instead (e.g. ``python:3.11-slim-bookworm`` on a site with a registry).

The whole scan uses the project's own launch scripts over the RabbitMQ on the host (127.0.0.1:5672), with the
containers running as an arbitrary uid that has no entry in the image (as Apptainer does).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import IN_CI, RABBITMQ, minimal_event_doc, need_broker, pulses_on_doms

pytestmark = [pytest.mark.containers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BASE_SCRIPT = ROOT / "resources" / "container_base.sh"
SCRIPTS = ROOT / "resources" / "launch_scripts"
LAUNCH_SERVER = SCRIPTS / "docker" / "launch_server.sh"
LAUNCH_CLIENT = SCRIPTS / "docker" / "launch_client.sh"
WAIT_FOR_FILE = SCRIPTS / "wait_for_file.sh"
IMAGE_NAME = "skymap-scanner-test"  # not the release name: the tests never overwrite a user's icecube/ tags
# tags per checkout, so that two checkouts testing at once on one daemon do not run each other's images
CHECKOUT = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
IMAGE_UID = 10001
RUN_AS = "54321:54321"  # no such user in the image: like Apptainer's arbitrary uid
NSIDES = ["8:0", "16:2"]


def unavailable(why: str) -> None:
    """Outside CI: skip with the reason; under CI=true: fail."""
    if IN_CI:
        pytest.fail(f"CI=true but {why}")
    pytest.skip(why)


def run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@dataclass(frozen=True)
class Images:
    base: str
    plain: str  # tags of IMAGE_NAME
    pulsar: str
    seconds: dict[str, float]

    def ref(self, tag: str) -> str:
        return f"{IMAGE_NAME}:{tag}"


@pytest.fixture(scope="session")
def images() -> Images:
    if shutil.which("docker") is None:
        unavailable("no docker client on PATH (Debian: apt-get install docker.io)")
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60)
    if info.returncode != 0:
        unavailable(f"the Docker daemon is not reachable: {info.stderr.strip().splitlines()[-1:]}")
    seconds: dict[str, float] = {}
    base = os.environ.get("SKYSCAN_TEST_BASE_IMAGE", "")
    if not base:
        t0 = time.monotonic()
        proc = run(["bash", str(BASE_SCRIPT)], timeout=1200)
        seconds["base"] = time.monotonic() - t0
        if proc.returncode == 2:  # a missing tool, no root: the script says which
            unavailable(f"no base image: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        base = proc.stdout.strip().splitlines()[-1]
    plain, pulsar = f"plain-{CHECKOUT}", f"pulsar-{CHECKOUT}"
    label = f"{IMAGE_NAME}={CHECKOUT}"
    for dockerfile, tag in (("Dockerfile", plain), ("Dockerfile_pulsar", pulsar)):
        t0 = time.monotonic()
        # the build stage is tagged too: it holds the dependency layer, which the prune below must keep
        for target in (
            ["--target", "build", "-t", f"{IMAGE_NAME}:{tag}-build"],
            ["-t", f"{IMAGE_NAME}:{tag}"],
        ):
            proc = run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                        "--label", label, "-f", str(ROOT / dockerfile), *target, str(ROOT)], timeout=1200)  # fmt: skip
            assert proc.returncode == 0, (
                f"{dockerfile} did not build:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        seconds[dockerfile] = time.monotonic() - t0
    # every code change leaves the previous images untagged (~500 MB each): drop this checkout's, only them
    run(["docker", "image", "prune", "--force", "--filter", f"label={label}"], timeout=300)
    print(f"\n[containers] base {base}; seconds: {json.dumps({k: round(v, 1) for k, v in seconds.items()})}")
    return Images(base, plain, pulsar, seconds)


def docker_run(image: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(["docker", "run", "--rm", "--network", "none", image, *cmd], timeout=timeout)


# --- the images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "pulsar"])
def test_default_command_prints_help_as_non_root(images: Images, kind: str) -> None:
    ref = images.ref(getattr(images, kind))
    proc = docker_run(ref)
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m skymap_scanner.server" in proc.stdout
    assert "usage: python -m skymap_scanner.client" in proc.stdout
    ident = docker_run(ref, "id", "-u")
    assert ident.stdout.strip() == str(IMAGE_UID)
    config = json.loads(run(["docker", "image", "inspect", ref], timeout=60).stdout)[0]["Config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    # the interpreter client_starter.py runs on HTCondor is the image's
    which = docker_run(ref, "bash", "-c", "command -v python")
    assert which.stdout.strip() == "/opt/skyscan/bin/python"


def test_broker_clients_importable(images: Images) -> None:
    code = "import pika, nats, mqclient; print('ok')"
    assert docker_run(images.ref(images.plain), "python", "-c", code).stdout.strip() == "ok"
    # the Pulsar image has the Pulsar client; the plain image does not
    code = "import pulsar, mqclient; print(pulsar.Client.__name__)"
    proc = docker_run(images.ref(images.pulsar), "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Client"
    assert docker_run(images.ref(images.plain), "python", "-c", "import pulsar").returncode != 0


def layer_paths(image: str) -> dict[str, list[str]]:
    """Every path in every layer of ``image`` (from ``docker save``), keyed by layer."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    layers: dict[str, list[str]] = {}
    with tarfile.open(fileobj=save.stdout, mode="r|") as outer:
        for member in outer:
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                f = outer.extractfile(member)
                if f is None:
                    continue
                try:
                    with tarfile.open(fileobj=f, mode="r|") as inner:
                        layers[member.name] = [m.name for m in inner]
                except tarfile.ReadError:  # an OCI blob that is a JSON document, not a layer
                    continue
    assert save.wait(timeout=300) == 0
    assert layers, "docker save gave no layers"
    return layers


SECRET_NAME_RE = re.compile(
    r"(^|/)(\.env|\.netrc|\.pypirc|\.git-credentials|id_(rsa|ed25519|ecdsa)|[^/]*\.token)$"
)
SECRET_WORD_RE = re.compile(r"AUTH|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL", re.IGNORECASE)


@pytest.mark.parametrize("kind", ["plain", "pulsar"])
def test_no_secret_test_file_or_git_in_any_layer(images: Images, kind: str) -> None:
    ref = images.ref(getattr(images, kind))
    layers = layer_paths(ref)
    paths = [p.removeprefix("./") for names in layers.values() for p in names]
    assert len(paths) > 1000  # the listing really covers the image
    # no git metadata anywhere, and no credential-looking file
    assert not [p for p in paths if re.search(r"(^|/)\.git(/|$)", p)]
    assert not [p for p in paths if SECRET_NAME_RE.search(p)]
    # no file of this repository other than what the image is meant to get (the package, via pip)
    tracked = run(["git", "ls-files"], timeout=60, cwd=ROOT).stdout.split()
    assert tracked, "git ls-files listed nothing"
    shipped = re.compile(r"^(skymap_scanner/|pyproject\.toml$|README\.md$)")
    others = {f for f in tracked if not shipped.match(f)}
    # a repository path (tests/conftest.py, resources/...) anywhere; a top-level name (.gitignore, Dockerfile:
    # dependencies ship files called that too) at the root or in a directory of ours
    ours = re.compile(r"^(src|home|root|opt/skyscan(?!/lib/python[0-9.]+/site-packages))(/|$)")
    leaked = sorted(
        {
            f
            for f in others
            for p in paths
            if p == f or ("/" in f and p.endswith("/" + f)) or (ours.match(p) and p.endswith("/" + f))
        }
    )
    assert not leaked
    # the build stage's source copy is not in the final image; the package is, in the venv only
    assert not [p for p in paths if p.startswith("src/")]
    assert any(p.endswith("site-packages/skymap_scanner/data/icecube86_inice_geometry.csv") for p in paths)
    assert not [p for p in paths if "/skymap_scanner/" in p and "site-packages/" not in p]
    # no pip cache; the dependencies' test suites are dropped
    assert not [p for p in paths if "/.cache/pip/" in p]
    assert not [p for p in paths if re.search(r"site-packages/(numpy|scipy|matplotlib)/(.+/)?tests/", p)]
    # nothing credential-looking in the configuration or the history (build arguments show there)
    inspect = json.loads(run(["docker", "image", "inspect", ref], timeout=60).stdout)[0]
    env_names = [e.partition("=")[0] for e in inspect["Config"]["Env"]]
    assert not [n for n in env_names if SECRET_WORD_RE.search(n)]
    history = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", ref], timeout=60).stdout
    assert history.strip()
    assert not SECRET_WORD_RE.search(history)


# --- scans in containers ------------------------------------------------------------------------------------


def small_event() -> dict[str, Any]:
    doms = [(s, o) for s in range(34, 40) for o in range(20, 40, 4)]
    return minimal_event_doc(run_id=727272, event_id=11, event_type="container_test", mjd=60200.25,
                             pulses=pulses_on_doms(doms, dt_ns=7.0, dq_pe=0.2))  # fmt: skip


def containers_mounting(path: Path) -> list[dict[str, Any]]:
    """Running containers with a bind mount from under ``path`` (the launch scripts do not name them)."""
    ids = run(["docker", "ps", "-q", "--no-trunc"], timeout=60).stdout.split()
    if not ids:
        return []
    proc = run(["docker", "inspect", *ids], timeout=60)
    found = []
    for c in json.loads(proc.stdout or "[]"):
        if any(str(m.get("Source", "")).startswith(str(path)) for m in c.get("Mounts", [])):
            found.append(c)
    return found


def read_result(out: Path) -> dict[str, np.ndarray]:
    (npz,) = out.glob("*.npz")
    with np.load(npz, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("nside-")}


@dataclass
class ContainerScan:
    tmp: Path
    startup: Path
    out: Path
    env: dict[str, str]
    killed: dict[str, Any]
    logs: Path


@pytest.fixture(scope="module")
def container_scan(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerScan]:
    """Server and two clients in containers via the launch scripts; one client killed mid-scan."""
    need_broker("RabbitMQ", *RABBITMQ)
    tmp = tmp_path_factory.mktemp("cscan")
    tmp.chmod(0o755)
    event = tmp / "event.json"
    event.write_text(json.dumps(small_event()))
    out, cache, startup_dir, logs = tmp / "out", tmp / "cache", tmp / "startup", tmp / "logs"
    for d in (out, cache, startup_dir):
        d.mkdir()
        d.chmod(0o777)  # written by RUN_AS, which is nobody on this host
    logs.mkdir()
    startup = startup_dir / "startup.json"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "SKYSCAN_DOCKER_IMAGE": IMAGE_NAME,
        "SKYSCAN_DOCKER_IMAGE_TAG": images.plain,
        "SKYSCAN_DOCKER_PULL_ALWAYS": "0",  # built here; there is no registry to pull from
        "SKYSCAN_DOCKER_USER": RUN_AS,
        "SKYSCAN_BROKER_CLIENT": "rabbitmq",
        "SKYSCAN_BROKER_ADDRESS": "guest:guest@127.0.0.1:5672/",
        "SKYSCAN_BATCH_SIZE": "16",
        "SKYSCAN_LEASE_MIN_SEC": "15",
        "SKYSCAN_PROGRESS_INTERVAL_SEC": "1",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE": "10",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "120",
        "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS": "180",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            procs[name] = subprocess.Popen(["bash", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        return procs[name]

    def log_tail(name: str) -> str:
        return (logs / f"{name}.log").read_text(errors="replace")[-3000:]

    killed: dict[str, Any] = {}
    try:
        server = launch("server", [str(LAUNCH_SERVER), "--event-file", str(event), "--reco-algo", "dummy",
                                   "--reco-option", "sleep_s=0.02", "--nsides", *NSIDES,
                                   "--output-dir", str(out), "--cache-dir", str(cache),
                                   "--client-startup-json", str(startup)])  # fmt: skip
        # the hand-off: the server (in its container) writes the startup JSON into the mounted directory
        waited = run(["bash", str(WAIT_FOR_FILE), str(startup), "180"], timeout=240)
        assert waited.returncode == 0, log_tail("server")
        clients = [launch(f"client-{i}", [str(LAUNCH_CLIENT), "--client-startup-json", str(startup)])
                   for i in range(2)]  # fmt: skip
        # once both client containers run and results come back, kill one (as an OOM kill or a lost node would)
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            running = [c for c in containers_mounting(tmp) if "skymap_scanner.client" in c["Args"]]
            # results checkpointed (the lock and the scan's key are there from the start: not results)
            done = (cache.exists() and any(f.name != ".server.lock" and f.suffix != ".key"
                                           for f in cache.rglob("*"))) or "done" in log_tail("server").lower()
            if len(running) == 2 and done:
                victim = running[0]
            else:
                time.sleep(0.5)
        assert victim is not None, log_tail("server")
        time.sleep(3)  # well into its work
        assert server.poll() is None, "the scan finished before a client could be killed mid-scan"
        killed["id"] = victim["Id"]
        kill = run(["docker", "kill", victim["Id"]], timeout=60)
        assert kill.returncode == 0, kill.stderr
        killed["server_running_at_kill"] = server.poll() is None
        assert server.wait(timeout=300) == 0, log_tail("server")
        killed["client_codes"] = [c.wait(timeout=120) for c in clients]
        yield ContainerScan(tmp, startup, out, env, killed, logs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        # `docker run --rm` containers outlive a killed docker client: stop them too
        for c in containers_mounting(tmp):
            run(["docker", "kill", c["Id"]], timeout=60)


def test_whole_scan_in_containers_equals_the_embedded_scan(
    container_scan: ContainerScan, tmp_path: Path
) -> None:
    event = container_scan.tmp / "event.json"
    embedded_out = tmp_path / "embedded"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    proc = run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(event), "--reco-algo", "dummy",
                "--nsides", *NSIDES, "--output-dir", str(embedded_out), "--local-workers", "1", "--no-products"],
               timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    in_containers = read_result(container_scan.out)
    embedded = read_result(embedded_out)
    assert sorted(in_containers) == sorted(embedded) == ["nside-16", "nside-8"]
    assert len(in_containers["nside-8"]) == 12 * 8**2
    assert len(in_containers["nside-16"]) > 0
    for key, arr in embedded.items():
        assert arr.dtype.names == in_containers[key].dtype.names
        for name in arr.dtype.names or ():
            assert np.array_equal(arr[name], in_containers[key][name], equal_nan=True), (key, name)
    assert np.isfinite(in_containers["nside-8"]["llh"]).all()


def test_scan_survives_a_client_killed_mid_scan(container_scan: ContainerScan) -> None:
    k = container_scan.killed
    assert k["server_running_at_kill"]
    codes = sorted(k["client_codes"])
    # the killed container's docker client reports SIGKILL (128 + 9); the other client finished cleanly
    assert codes == [0, 137], codes
    # both clients did work (so the killed one died mid-scan, with work done and work in hand), and every fit
    # was received exactly once: what it held unanswered went to the other client
    manifest = json.loads((container_scan.out / "scan-manifest.json").read_text())
    assert manifest["complete"] is True
    per_client = manifest["per_client_fits"]
    assert len(per_client) == 2 and min(per_client.values()) > 0, per_client
    expected = sum(step["items_expected"] for step in manifest["progress"])
    assert sum(per_client.values()) == expected
    assert manifest["dropped"]["duplicates"] == 0 and manifest["failures"]["failed_fits"] == 0
    # the server wrote its products as uid 54321 (no such user in the image: HOME must be writable)
    owners = {p.stat().st_uid for p in container_scan.out.iterdir()}
    assert owners == {int(RUN_AS.partition(":")[0])}
    assert list(container_scan.out.glob("*.png")) or list(container_scan.out.rglob("*.png"))


def test_single_message_client_in_the_image(container_scan: ContainerScan, tmp_path: Path) -> None:
    """The EWMS pilot's task: one work message from --infile, the reply to --outfile, in the image."""
    from skymap_scanner.events import event_from_json_dict
    from skymap_scanner.intake import accept_result
    from skymap_scanner.messages import WorkMessage
    from skymap_scanner.signing import Verifier, seal
    from skymap_scanner.transport.mq import read_startup_json
    from skymap_scanner.worker import PixelWorker

    startup = read_startup_json(container_scan.startup)
    n = 6
    work = WorkMessage(
        scan_id=startup["scan_id"], batch_id=424242, nside=8, pixels=np.arange(100, 100 + n),
        posvars=np.array([0, 1] * (n // 2)), zenith_rad=np.linspace(0.2, 2.9, n),
        azimuth_rad=np.linspace(0.1, 6.0, n), seeds=np.full((n, 4), np.nan),
    )  # fmt: skip
    task = tmp_path / "task"
    task.mkdir()
    task.chmod(0o777)
    infile, outfile = task / "in.json", task / "reply" / "out.json"
    key = bytes.fromhex(startup["scan_key"])  # every message is signed with the scan's key (issue 12)
    infile.write_text(json.dumps(seal(work.to_dict(), "work", key)))
    outfile.parent.mkdir()
    outfile.parent.chmod(0o777)
    proc = run(["bash", str(LAUNCH_CLIENT), "--client-startup-json", str(container_scan.startup),
                "--infile", str(infile), "--outfile", str(outfile)], timeout=180, env=container_scan.env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    reply = accept_result(outfile.read_bytes(), startup["scan_id"], Verifier(key, "result"))
    event = event_from_json_dict(startup["event"], "startup event")
    expected = PixelWorker(event, startup["reco_algo"], startup["reco_options"], "host").handle(work)
    assert reply.batch_id == 424242 and reply.scan_id == startup["scan_id"]
    assert np.array_equal(reply.pixels, work.pixels) and np.array_equal(reply.posvars, work.posvars)
    assert np.array_equal(reply.fits, expected.fits)
    assert reply.errors == (None,) * n
    # a message for another scan is refused, with a one-line error and no reply
    other = task / "other.json"
    other.write_text(json.dumps(seal({**work.to_dict(), "scan_id": "not-this-scan"}, "work", key)))
    bad_out = task / "reply" / "bad.json"
    proc = run(["bash", str(LAUNCH_CLIENT), "--client-startup-json", str(container_scan.startup),
                "--infile", str(other), "--outfile", str(bad_out)], timeout=180, env=container_scan.env)  # fmt: skip
    assert proc.returncode != 0
    assert "not-this-scan" in proc.stderr
    assert not bad_out.exists()


def test_wait_for_file_sees_the_startup_json_only_when_complete(container_scan: ContainerScan) -> None:
    """The server in its container wrote the startup JSON atomically into the mounted directory: it is
    complete JSON, names the scan's queues, and holds no broker credentials."""
    text = container_scan.startup.read_text()
    doc = json.loads(text)
    assert doc["queue_to_clients"] and doc["queue_from_clients"]
    assert "guest:guest" not in text
    # no temp file left behind next to it
    assert [p.name for p in container_scan.startup.parent.iterdir()] == [container_scan.startup.name]
    proc = run(["bash", str(WAIT_FOR_FILE), str(container_scan.startup), "0"], timeout=30)
    assert proc.returncode == 0
