"""Issue 12's operator and adversary probes, re-run against a real broker: prints what each did.

Each probe runs the real server and client processes (``python -m skymap_scanner.server`` / ``.client``,
``dummy`` reco) the way an operator would, and compares with an embedded scan of the same event:

1. a forged result (pixel 700, llh -2e9, signed with a wrong key) put on the results queue before the clients start;
2. garbage, an oversized message and a 1 GB zstd bomb (33 KB) on the results queue, garbage on the work queue;
3. a scan with no workers (SKYSCAN_TIMEOUT_NO_FIT_SEC=15);
4. the broker closing every connection under a waiting server (``rabbitmqctl close_all_connections``);
5. two servers started with the same arguments at once, two clients each;
6. SIGTERM to the server mid-scan: its exit, its clients' exits, the partial result's name;
7. leftovers: which of the probes' queues still exist at the end;
8. the same scan over NATS and Pulsar (pulsar-lite on 127.0.0.1:6650, when it answers).

Usage (RabbitMQ on 127.0.0.1:5672, NATS on 127.0.0.1:4222)::

    python benchmarks/probe_operations.py [--only 1,2,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from skymap_scanner.messages import ResultMessage
from skymap_scanner.results import load_result
from skymap_scanner.signing import new_key, seal
from skymap_scanner.transport.mq import BrokerSettings
from skymap_scanner.transport.mq_wire import open_pub

REPO = Path(__file__).resolve().parents[1]
EVENT = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
ADDRESS = {"rabbitmq": "127.0.0.1", "nats": "nats://127.0.0.1:4222", "pulsar": "pulsar://127.0.0.1:6650"}
PORT = {"rabbitmq": 5672, "nats": 4222, "pulsar": 6650}
ARGS = ["--reco-algo", "dummy", "--reco-option", "n_posvar=1", "--nsides", "8:0", "64:12"]
QUEUES: list[tuple[str, str]] = []  # (broker, queue) of every probe, checked for leftovers at the end


def reachable(broker: str) -> bool:
    try:
        socket.create_connection(("127.0.0.1", PORT[broker]), timeout=1).close()
        return True
    except OSError:
        return False


def env_for(broker: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(SKYSCAN_BROKER_CLIENT=broker, SKYSCAN_BROKER_ADDRESS=ADDRESS[broker],
               SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE="60", SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="10",
               SKYSCAN_PROGRESS_INTERVAL_SEC="1")
    env.update(more)
    return env


class Run:
    """A server and its clients in one directory."""

    def __init__(self, root: Path, name: str, broker: str = "rabbitmq", env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.broker = broker
        self.env = env or env_for(broker)
        self.args = ["--event-file", str(EVENT), *(args or ARGS), "--output-dir", str(self.dir / "out"),
                     "--client-startup-json", str(self.dir / "startup.json"), "--no-products"]
        self.server: subprocess.Popen[bytes] | None = None
        self.clients: list[subprocess.Popen[bytes]] = []
        self.peak_rss_mib = 0.0
        self.t0 = 0.0

    def _popen(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.dir / log, "wb") as f:
            return subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=f, env=self.env,
                                    cwd=self.dir, start_new_session=True)

    def start_server(self) -> None:
        self.t0 = time.monotonic()
        self.server = self._popen(["-m", "skymap_scanner.server", *self.args], "server.log")

    def startup(self, timeout_s: float = 60) -> dict[str, Any]:
        path = self.dir / "startup.json"
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline or (self.server and self.server.poll() is not None):
                raise RuntimeError(f"no startup JSON:\n{self.log()[-2000:]}")
            time.sleep(0.05)
        doc: dict[str, Any] = json.loads(path.read_text())
        for q in (doc["queue_to_clients"], doc["queue_from_clients"]):
            if (self.broker, q) not in QUEUES:
                QUEUES.append((self.broker, q))
        return doc

    def start_clients(self, n: int = 2) -> None:
        self.startup()
        for i in range(n):
            self.clients.append(self._popen(["-m", "skymap_scanner.client", "--client-startup-json",
                                             str(self.dir / "startup.json")], f"client-{i + 1}.log"))

    def wait(self, timeout_s: float = 300) -> tuple[int | None, float]:
        """The server's exit code (None if it had to be killed) and wall time; samples its peak RSS."""
        assert self.server is not None
        deadline = time.monotonic() + timeout_s
        while self.server.poll() is None and time.monotonic() < deadline:
            self.peak_rss_mib = max(self.peak_rss_mib, rss_mib(self.server.pid))
            time.sleep(0.1)
        wall = time.monotonic() - self.t0
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
            return None, wall
        return self.server.returncode, wall

    def wait_clients(self, timeout_s: float = 60) -> list[int | None]:
        deadline = time.monotonic() + timeout_s
        for p in self.clients:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return [p.poll() for p in self.clients]

    def kill_all(self) -> None:
        for p in [self.server, *self.clients]:
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def manifest(self) -> dict[str, Any]:
        m: dict[str, Any] = json.loads((self.dir / "out" / "scan-manifest.json").read_text())
        return m

    def result(self) -> dict[int, Any]:
        (npz,) = [p for p in (self.dir / "out").glob("*.npz") if not p.name.endswith(".partial.npz")]
        return load_result(npz).maps

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def last_line(self) -> str:
        lines = [ln for ln in self.log().splitlines() if ln.strip()]
        return lines[-1][lines[-1].find("]") + 1:].strip()[:150] if lines else ""


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def publish(broker: str, queue: str, payloads: list[Any], raw: bool) -> None:
    async def go() -> None:
        settings = BrokerSettings(broker, ADDRESS[broker], "", 60)
        async with open_pub(settings, queue, subscribe_first=False) as pub:
            for p in payloads:
                await (pub.send_raw(p) if raw else pub.send(p))
    asyncio.run(go())


def zstd_bomb(decoded_bytes: int) -> bytes:
    import zstandard

    out = zstandard.ZstdCompressor(level=19).compressobj(size=decoded_bytes)
    chunk = bytes(1 << 20)
    parts = [out.compress(chunk) for _ in range(decoded_bytes >> 20)]
    parts.append(out.flush())
    return b"".join(parts)


def same_maps(got: dict[int, Any], want: dict[int, Any]) -> bool:
    if sorted(got) != sorted(want):
        return False
    for n in want:
        g, w = np.sort(got[n], order="index"), np.sort(want[n], order="index")
        if not (np.array_equal(g["index"], w["index"]) and np.array_equal(g["llh"], w["llh"], equal_nan=True)):
            return False
    return True


def best(maps: dict[int, Any]) -> tuple[int, int, float]:
    n = max(maps)
    arr = maps[n]
    i = int(np.nanargmin(arr["llh"]))
    return n, int(arr["index"][i]), float(arr["llh"][i])


def embedded_reference(root: Path) -> dict[int, Any]:
    out = root / "embedded"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(EVENT), *ARGS,
                    "--output-dir", str(out), "--local-workers", "2", "--no-products"], env=env, check=True,
                   capture_output=True, timeout=300)
    (npz,) = out.glob("*.npz")
    return load_result(npz).maps


# -- the probes -------------------------------------------------------------------------------------------

def probe_forged(root: Path, ref: dict[int, Any]) -> None:
    r = Run(root, "forged")
    r.start_server()
    doc = r.startup()
    fits = np.array([[-2e9, 0, 0, 0, 0, 0, 0]], float)
    forged = ResultMessage(doc["scan_id"], 1, 8, np.array([700]), np.array([0]), fits, (None,), np.array([0.0]),
                           "adversary")
    publish("rabbitmq", doc["queue_from_clients"], [seal(forged.to_dict(), "result", new_key())], raw=False)
    r.start_clients()
    rc, wall = r.wait()
    got = r.result()
    d = r.manifest()["dropped"]
    print(f"1) forged result (pixel 700, llh -2e9, wrong key): exit {rc}, {wall:.0f} s; best fit {best(got)[:2]} "
          f"(embedded {best(ref)[:2]}); nside-64 pixels {got[64].size} (embedded {ref[64].size}); result "
          f"{'equals' if same_maps(got, ref) else 'DIFFERS FROM'} embedded; forged_messages {d['forged_messages']}; "
          f"server peak RSS {r.peak_rss_mib:.0f} MiB")
    r.wait_clients()


def probe_poison(root: Path, ref: dict[int, Any]) -> None:
    r = Run(root, "poison")
    r.start_server()
    doc = r.startup()
    bomb = zstd_bomb(1 << 30)
    big = b"\x28\xb5\x2f\xfd" + os.urandom(9 * 1024 * 1024)  # a zstd magic, then 9 MiB: over the 8 MiB limit
    publish("rabbitmq", doc["queue_from_clients"], [b"garbage, not zstd", big, bomb], raw=True)
    publish("rabbitmq", doc["queue_to_clients"], [b"garbage, not zstd", bomb], raw=True)
    r.start_clients()
    rc, wall = r.wait()
    clients = r.wait_clients()
    m = r.manifest()
    got = r.result()
    print(f"2) poison: results queue garbage + 9 MiB + {len(bomb) / 1024:.0f} KB zstd bomb (1 GiB), work queue "
          f"garbage + bomb: exit {rc}, {wall:.0f} s, complete {m['complete']}, result "
          f"{'equals' if same_maps(got, ref) else 'DIFFERS FROM'} embedded; bad_messages "
          f"{m['dropped']['bad_messages']}, work_messages_dropped_by_clients "
          f"{m['dropped']['work_messages_dropped_by_clients']}; server peak RSS {r.peak_rss_mib:.0f} MiB; "
          f"clients exit {clients}")


def probe_no_workers(root: Path) -> None:
    r = Run(root, "no-workers", env=env_for("rabbitmq", SKYSCAN_TIMEOUT_NO_FIT_SEC="15",
                                             SKYSCAN_LEASE_MIN_SEC="2"))
    r.start_server()
    doc = r.startup()
    rc, wall = r.wait(timeout_s=120)
    m = r.manifest()
    partial = sorted(p.name for p in (r.dir / "out").glob("*.npz"))
    print(f"3) no workers (SKYSCAN_TIMEOUT_NO_FIT_SEC=15, lease_min 2 s): exit {rc} after {wall:.0f} s; "
          f"complete {m['complete']}; resent_batches {m['failures']['resent_batches']}, failed_attempts "
          f"{m['failures']['failed_attempts']}; files {partial}; last line: {r.last_line()!r}; queue "
          f"{doc['queue_to_clients']} left: {queue_exists('rabbitmq', doc['queue_to_clients'])}")


def probe_connections_closed(root: Path) -> None:
    if shutil.which("rabbitmqctl") is None:
        print("4) broker closes connections: skipped (no rabbitmqctl on this machine)")
        return
    r = Run(root, "closed", env=env_for("rabbitmq", SKYSCAN_TIMEOUT_NO_FIT_SEC="12", SKYSCAN_MQ_HEARTBEAT_SEC="2"))
    r.start_server()
    r.startup()
    time.sleep(2)
    subprocess.run(["rabbitmqctl", "close_all_connections", "probe: broker closes connections"],
                   capture_output=True, timeout=60, check=True)
    t_closed = time.monotonic()
    rc, _ = r.wait(timeout_s=120)
    print(f"4) broker closed every connection under a waiting server: exit {rc} "
          f"{time.monotonic() - t_closed:.1f} s later (no-fit timeout 12 s); last line: {r.last_line()!r}")


def probe_two_servers(root: Path, ref: dict[int, Any]) -> None:
    runs = [Run(root, f"twin-{i}") for i in (1, 2)]
    for r in runs:
        r.start_server()
    for r in runs:
        r.start_clients()
    out = []
    for r in runs:
        rc, wall = r.wait()
        got = r.result()
        nan = sum(int(np.isnan(a["llh"]).sum()) for a in got.values())
        out.append(f"exit {rc}, {wall:.0f} s, NaN pixels {nan}, {'equals' if same_maps(got, ref) else 'DIFFERS'}")
        r.wait_clients()
    queues = {r.startup()["queue_to_clients"] for r in runs}
    print(f"5) two servers with the same arguments at once ({len(queues)} distinct work queues): "
          + "; ".join(out))


def probe_sigterm(root: Path) -> None:
    r = Run(root, "sigterm", args=[*ARGS[:-2], "8:0", "64:12", "--reco-option", "sleep_s=0.02"])
    r.start_server()
    r.start_clients()
    assert r.server is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if sum(int(p["items_received"]) for p in r.manifest()["progress"]) > 200:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    t_sig = time.monotonic()
    r.server.send_signal(signal.SIGTERM)
    rc, _ = r.wait(timeout_s=60)
    t_server = time.monotonic() - t_sig
    clients = r.wait_clients(timeout_s=60)
    t_clients = time.monotonic() - t_sig
    files = sorted(p.name for p in (r.dir / "out").glob("*.npz"))
    print(f"6) SIGTERM mid-scan: server exit {rc} after {t_server:.1f} s; clients exit {clients} within "
          f"{t_clients:.1f} s; files {files}; stopped {r.manifest()['stopped']!r}; "
          f"line: {next((ln[ln.find(']') + 1:].strip() for ln in r.log().splitlines() if 'SIGTERM' in ln), '')[:120]!r}")


def probe_other_brokers(root: Path, ref: dict[int, Any]) -> None:
    for broker in ("nats", "pulsar"):
        if not reachable(broker):
            print(f"8) {broker}: skipped (nothing answers on 127.0.0.1:{PORT[broker]})")
            continue
        r = Run(root, f"e2e-{broker}", broker=broker)
        r.start_server()
        r.start_clients()
        rc, wall = r.wait()
        clients = r.wait_clients()
        got = r.result()
        print(f"8) {broker}: exit {rc}, {wall:.0f} s, clients exit {clients}, result "
              f"{'equals' if same_maps(got, ref) else 'DIFFERS FROM'} embedded")


def queue_exists(broker: str, name: str) -> bool:
    if broker == "rabbitmq":
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", connection_attempts=1))
        try:
            conn.channel().queue_declare(name, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if conn.is_open:
                conn.close()
    if broker == "nats":
        async def go() -> bool:
            import nats

            nc = await nats.connect(ADDRESS["nats"])
            try:
                await nc.jetstream().stream_info(f"{name}-stream")
                return True
            except Exception:
                return False
            finally:
                await nc.close()
        return asyncio.run(go())
    raise ValueError(broker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8", help="comma-separated probe numbers")
    which = {int(x) for x in ap.parse_args().only.split(",")}
    if not reachable("rabbitmq"):
        raise SystemExit("probe_operations: no RabbitMQ on 127.0.0.1:5672")
    root = Path(tempfile.mkdtemp(prefix="skyscan-probes-"))
    print(f"probes in {root}; dummy reco, nsides 8:0 64:12, n_posvar 1, 2 clients; embedded reference first")
    ref = embedded_reference(root)
    runs = {1: lambda: probe_forged(root, ref), 2: lambda: probe_poison(root, ref), 3: lambda: probe_no_workers(root),
            4: lambda: probe_connections_closed(root), 5: lambda: probe_two_servers(root, ref),
            6: lambda: probe_sigterm(root), 8: lambda: probe_other_brokers(root, ref)}
    for n in sorted(which - {7}):
        try:
            runs[n]()
        except Exception as e:  # one probe's failure is a finding, not the end of the others
            print(f"{n}) FAILED: {type(e).__name__}: {e}")
    if 7 in which:
        time.sleep(20)  # each server deletes its queues 3 s after its scan-over (RabbitMQ: up to 15 s more)
        left = [(b, q) for b, q in QUEUES if b != "pulsar" and queue_exists(b, q)]
        print(f"7) leftovers: {len(left)} of {sum(b != 'pulsar' for b, _ in QUEUES)} queues/streams the probes "
              f"used still exist {left if left else ''}")


if __name__ == "__main__":
    main()
