"""Broker-mode throughput and overhead (prints numbers; needs RabbitMQ on 127.0.0.1:5672).

1. Pixel-variation round trips per second through RabbitMQ with a zero-cost reco (``dummy``,
   sleep 0): one server (this process) and 1 or 2 client processes.
2. Wall time of the same ``dummy`` scan with a fixed sleep per fit in embedded mode with N local
   workers vs broker mode with N clients.
3. ``--concurrent N`` (issue 12): N scans at once on one broker, each a server process with 2 client
   processes; per scan the wall time, the server's CPU time and peak memory, and whether its result
   equals the embedded scan of the same event (each scan has its own event time, so its own fits: a
   reply crossing over from another scan would show as a difference).
4. ``--compare-hmac``: section 1 with the messages' HMAC-SHA256 (as shipped) and, alternately, with
   it replaced by a cheap non-cryptographic tag (CRC32 + Adler-32 of the same bytes, so the envelope,
   the replay memory and everything else stay as they are) in the server and in the clients: the
   cost of signing in round trips/s. Only a benchmark can switch the MAC off.

The timed part is the scan loop only (``ScanRunner.run()``): workers and clients are started and
have prepared the event before the clock starts, as in a long scan where start-up is negligible.
Each scan uses a fresh event id (fresh queues) and deletes its queues afterwards.

    python benchmarks/bench_broker.py [--nsides "8:0 64:12 512:24"] [--n-posvar 8] [--sleep-s 0.002]
    python benchmarks/bench_broker.py --concurrent 8 [--broker nats] [--nsides "8:0 64:12"]
    python benchmarks/bench_broker.py --compare-hmac [--nsides "8:0 64:12"] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"


def fresh_event(event_id: int | None = None) -> object:
    """The sample event under a new event id (a new scan id, so new queues)."""
    from skymap_scanner.coords import equatorial_to_local
    from skymap_scanner.events.native import from_dict

    doc = json.loads(SAMPLE.read_text())
    doc["run_id"], doc["event_id"] = 31337, event_id or random.randrange(1, 2**31)
    equatorial_to_local(0.0, 0.0, doc["mjd"])  # astropy's tables loaded before any clock starts
    return from_dict(doc, "bench event")


def delete_queues(names: list[str]) -> None:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    try:
        ch = conn.channel()
        for n in names:
            ch.queue_delete(n)
    finally:
        conn.close()


def cheap_tag(key: bytes, kind: str, body: bytes) -> str:
    """The benchmark's stand-in for the HMAC: the same inputs, a 64-bit non-cryptographic checksum."""
    import zlib

    data = key + kind.encode() + b"\0" + body
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def set_hmac(on: bool) -> None:
    """Sign with HMAC-SHA256 (``on``, as shipped) or with :func:`cheap_tag` in this process."""
    import skymap_scanner.signing as signing

    if not hasattr(signing, "_bench_real_mac"):
        signing._bench_real_mac = signing._mac  # type: ignore[attr-defined]
    signing._mac = signing._bench_real_mac if on else cheap_tag  # type: ignore[attr-defined]


def run_broker(nsides: str, options: dict[str, str], n_clients: int, batch_size: int,
               event_id: int | None = None, hmac_on: bool = True) -> tuple[float, int, dict]:
    """(scan-loop seconds, fits, manifest) of one broker scan with ``n_clients`` client processes."""
    from skymap_scanner.config import EnvConfig
    from skymap_scanner.scan import ScanRunner, ScanSpec
    from skymap_scanner.transport.mq import make_server_transport

    set_hmac(hmac_on)
    cfg = EnvConfig(SKYSCAN_BROKER_ADDRESS="127.0.0.1")
    spec = ScanSpec(fresh_event(event_id), "dummy", options, nsides, batch_size=batch_size,  # type: ignore[arg-type]
                    progress_interval_s=3600)
    with tempfile.TemporaryDirectory() as tmp:
        startup = Path(tmp) / "startup.json"
        transport = make_server_transport(cfg, spec, startup)
        transport.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
        env.update(SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="2", SKYSCAN_LOG="INFO")
        logs = [Path(tmp) / f"client-{i}.log" for i in range(n_clients)]
        procs = []
        for log in logs:
            with open(log, "w") as f:
                client = ["-m", "skymap_scanner.client"] if hmac_on else [__file__, "--client-without-hmac"]
                procs.append(subprocess.Popen([sys.executable, *client, "--client-startup-json", str(startup)],
                                              stderr=f, env=env, start_new_session=True))
        try:
            deadline = time.monotonic() + 120
            while not all("client for scan" in log.read_text() for log in logs):  # event and reco loaded
                if time.monotonic() > deadline:
                    raise SystemExit("clients did not start")
                time.sleep(0.05)
            time.sleep(0.3)  # the clients' subscriptions open
            runner = ScanRunner(spec, transport)
            b0 = runner.protocol.last_batch_id
            t0 = time.perf_counter()
            runner.run()
            dt = time.perf_counter() - t0
            manifest = runner.manifest()
            manifest["bench_messages"] = runner.protocol.last_batch_id - b0
        finally:
            transport.close()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
            delete_queues([transport.to_clients, transport.from_clients])
    fits = sum(int(p["items_expected"]) for p in manifest["progress"])
    return dt, fits, manifest


def run_embedded(nsides: str, options: dict[str, str], n_workers: int, batch_size: int,
                 event_id: int | None = None) -> tuple[float, int]:
    from skymap_scanner.events import native
    from skymap_scanner.scan import ScanRunner, ScanSpec
    from skymap_scanner.transport.embedded import EmbeddedTransport

    event = fresh_event(event_id)
    spec = ScanSpec(event, "dummy", options, nsides, batch_size=batch_size,  # type: ignore[arg-type]
                    progress_interval_s=3600)
    transport = EmbeddedTransport(native.to_dict(event), "dummy", options, n_workers,  # type: ignore[arg-type]
                                  scan_id=spec.scan_id, key=spec.key)
    transport.start()  # waits until every worker has prepared the event
    try:
        runner = ScanRunner(spec, transport)
        t0 = time.perf_counter()
        runner.run()
        dt = time.perf_counter() - t0
        fits = sum(int(p["items_expected"]) for p in runner.manifest()["progress"])
    finally:
        transport.close()
    return dt, fits


def concurrent_event(i: int, base_id: int) -> dict:
    """Scan i's event: the sample under its own event id and a time shifted by i hours (other fits)."""
    doc = json.loads(SAMPLE.read_text())
    doc["run_id"], doc["event_id"] = 31337, base_id + i
    doc["mjd"] = float(doc["mjd"]) + i / 24.0
    return doc


def embedded_maps(doc: dict, nsides: str, options: dict[str, str]) -> dict:
    """The embedded scan's maps of event ``doc`` (2 local workers)."""
    from skymap_scanner.events.native import from_dict
    from skymap_scanner.scan import ScanRunner, ScanSpec
    from skymap_scanner.transport.embedded import EmbeddedTransport

    event = from_dict(doc, "bench event")
    spec = ScanSpec(event, "dummy", options, nsides, progress_interval_s=3600)  # type: ignore[arg-type]
    transport = EmbeddedTransport(doc, "dummy", options, 2, scan_id=spec.scan_id, key=spec.key)
    transport.start()
    try:
        runner = ScanRunner(spec, transport)
        runner.run()
        return {f"nside-{n}": arr for n, arr in runner.result().maps.items()}
    finally:
        transport.close()


def same_maps(npz: Path, want: dict) -> bool:
    import numpy as np

    from skymap_scanner.collector import FIT_FIELDS

    with np.load(npz) as got:
        keys = sorted(k for k in got.files if k.startswith("nside-"))
        if keys != sorted(want):
            return False
        for k in keys:
            g, w = np.sort(got[k], order="index"), np.sort(want[k], order="index")
            if not np.array_equal(g["index"], w["index"]):
                return False
            if not all(np.array_equal(g[f], w[f], equal_nan=True) for f in FIT_FIELDS):
                return False
    return True


def run_concurrent(n_scans: int, broker: str, address: str, nsides: str, options: dict[str, str]) -> None:
    """``n_scans`` broker scans at once (server + 2 clients each) on one broker; one line per scan."""
    base_id = random.randrange(1, 2**30)
    docs = [concurrent_event(i, base_id) for i in range(n_scans)]
    print(f"3) {n_scans} concurrent scans on one {broker} broker, 2 clients each, dummy {options}, nsides {nsides}")
    t_emb = time.perf_counter()
    wanted = [embedded_maps(doc, nsides, options) for doc in docs]
    print(f"   (embedded references: {time.perf_counter() - t_emb:.1f} s for {n_scans} scans)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(SKYSCAN_BROKER_CLIENT=broker, SKYSCAN_BROKER_ADDRESS=address, SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="3",
               SKYSCAN_PROGRESS_INTERVAL_SEC="5")
    with tempfile.TemporaryDirectory() as tmp:
        servers, clients, t_start = [], [], time.perf_counter()
        for i, doc in enumerate(docs):
            d = Path(tmp) / f"scan-{i}"
            d.mkdir()
            (d / "event.json").write_text(json.dumps(doc))
            opts = [a for k, v in options.items() for a in ("--reco-option", f"{k}={v}")]
            with open(d / "server.log", "w") as f:
                servers.append(subprocess.Popen(
                    [sys.executable, "-m", "skymap_scanner.server", "--event-file", str(d / "event.json"),
                     "--reco-algo", "dummy", *opts, "--nsides", *nsides.split(), "--output-dir", str(d / "out"),
                     "--client-startup-json", str(d / "startup.json"), "--no-products"],
                    stdout=subprocess.DEVNULL, stderr=f, env=env, cwd=d, start_new_session=True))
        for i in range(n_scans):
            d = Path(tmp) / f"scan-{i}"
            deadline = time.monotonic() + 120
            while not (d / "startup.json").exists():
                if time.monotonic() > deadline or servers[i].poll() is not None:
                    raise SystemExit(f"scan {i}: no client-startup JSON\n{(d / 'server.log').read_text()[-2000:]}")
                time.sleep(0.05)
            for c in range(2):
                with open(d / f"client-{c}.log", "w") as f:
                    clients.append(subprocess.Popen(
                        [sys.executable, "-m", "skymap_scanner.client", "--client-startup-json", str(d / "startup.json")],
                        stdout=subprocess.DEVNULL, stderr=f, env=env, start_new_session=True))
        done: dict[int, tuple[float, int, float, float]] = {}  # i -> (wall s, rc, cpu s, peak MiB)
        deadline = time.monotonic() + 3600
        while len(done) < n_scans and time.monotonic() < deadline:
            for i, p in enumerate(servers):
                if i in done:
                    continue
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    done[i] = (time.perf_counter() - t_start, p.returncode, ru.ru_utime + ru.ru_stime,
                               ru.ru_maxrss / 1024)
            time.sleep(0.05)
        for p in clients:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        same = 0
        for i in range(n_scans):
            d = Path(tmp) / f"scan-{i}"
            npz = next((d / "out").glob("*.npz"), None) if (d / "out").exists() else None
            ok = npz is not None and not npz.name.endswith(".partial.npz") and same_maps(npz, wanted[i])
            same += ok
            wall, rc, cpu, mib = done.get(i, (float("nan"), -1, float("nan"), float("nan")))
            print(f"   scan {i}: exit {rc}, wall {wall:.1f} s, server CPU {cpu:.1f} s, server peak RSS {mib:.0f} MiB, "
                  f"result {'equals' if ok else 'DIFFERS FROM'} the embedded one")
        walls = [v[0] for v in done.values()]
        print(f"   all {n_scans} done in {max(walls):.1f} s; {same}/{n_scans} results equal to embedded "
              f"(no cross-talk)" if walls else "   no scan finished")


def compare_hmac(nsides: str, n_posvar: int, repeat: int, batch_size: int) -> None:
    """Section 4: round trips/s with and without the HMAC, alternating runs (1 server + 2 clients)."""
    zero = {"n_posvar": str(n_posvar)}
    rates: dict[bool, list[float]] = {True: [], False: []}
    print(f"4) signing cost: zero-cost reco (dummy, sleep 0, n_posvar {n_posvar}), nsides {nsides}, "
          f"1 server + 2 clients, {repeat} runs each, alternating")
    for _ in range(repeat):
        for on in (False, True):
            dt, fits, _ = run_broker(nsides, zero, 2, batch_size, hmac_on=on)
            rates[on].append(fits / dt)
    set_hmac(True)
    for on in (False, True):
        r = sorted(rates[on])
        print(f"   {'HMAC-SHA256 ' if on else 'cheap tag   '}: ~{fits} fits; round trips/s "
              + ", ".join(f"{x:,.0f}" for x in rates[on]) + f"  (median {r[len(r) // 2]:,.0f}, best {r[-1]:,.0f})")
    med = {on: sorted(rates[on])[len(rates[on]) // 2] for on in rates}
    print(f"   signing costs {100 * (1 - med[True] / med[False]):+.1f}% of the median round-trip rate "
          f"({100 * (1 - max(rates[True]) / max(rates[False])):+.1f}% best vs best)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client-without-hmac":  # a client process of section 4
        from skymap_scanner.client.__main__ import main as client_main

        set_hmac(False)
        raise SystemExit(client_main(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nsides", default="8:0 64:12 512:24")
    ap.add_argument("--n-posvar", type=int, default=8, help="position variations of the zero-cost scan")
    ap.add_argument("--sleep-s", type=float, default=0.002, help="seconds per fit in the overhead comparison")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only-zero-cost", action="store_true", help="skip the embedded/broker comparison")
    ap.add_argument("--batch-size", type=int, default=0, help="0 = adaptive (the default)")
    ap.add_argument("--concurrent", type=int, default=0, help="only section 3: this many scans at once")
    ap.add_argument("--broker", default="rabbitmq", choices=("rabbitmq", "nats", "pulsar"))
    ap.add_argument("--address", default="", help="broker address (default: the local test broker)")
    ap.add_argument("--compare-hmac", action="store_true", help="only section 4: round trips/s without/with HMAC")
    args = ap.parse_args()
    import logging

    if args.compare_hmac:
        logging.basicConfig(level=logging.WARNING)
        compare_hmac(args.nsides, args.n_posvar, args.repeat, args.batch_size)
        return

    if args.concurrent:
        address = args.address or {"rabbitmq": "127.0.0.1", "nats": "nats://127.0.0.1:4222",
                                   "pulsar": "pulsar://127.0.0.1:6650"}[args.broker]
        run_concurrent(args.concurrent, args.broker, address, args.nsides, {"n_posvar": "2"})
        return

    logging.basicConfig(level=logging.WARNING)

    print(f"1) zero-cost reco (dummy, sleep 0, n_posvar {args.n_posvar}), nsides {args.nsides}")
    zero = {"n_posvar": str(args.n_posvar)}
    for n in (1, 2):
        rates, msg_rates = [], []
        for _ in range(args.repeat):
            dt, fits, m = run_broker(args.nsides, zero, n, args.batch_size)
            rates.append(fits / dt)
            msg_rates.append(m["bench_messages"] / dt)
        print(f"   broker, 1 server + {n} client(s): ~{fits} fits; pixel-variation round trips/s: "
              + ", ".join(f"{r:,.0f}" for r in rates) + f"  (best {max(rates):,.0f}); messages/s: "
              + ", ".join(f"{r:,.0f}" for r in msg_rates))

    if args.only_zero_cost:
        return
    print(f"2) dummy with sleep_s={args.sleep_s} per fit (n_posvar 2), nsides {args.nsides}, "
          f"{args.workers} workers/clients")
    slow = {"sleep_s": str(args.sleep_s)}
    ratios = []
    for _ in range(args.repeat):
        event_id = random.randrange(1, 2**31)  # the same event (so the same fits) in both modes
        t_emb, fits = run_embedded(args.nsides, slow, args.workers, args.batch_size, event_id)
        t_brk, fits2, _ = run_broker(args.nsides, slow, args.workers, args.batch_size, event_id)
        assert fits == fits2
        ideal = fits * args.sleep_s / args.workers
        ratios.append(t_brk / t_emb)
        print(f"   {fits} fits (sleep alone {ideal:.2f} s per worker): embedded {t_emb:.2f} s, broker {t_brk:.2f} s, "
              f"broker/embedded {t_brk / t_emb:.3f}")
    print(f"   broker/embedded median: {sorted(ratios)[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
