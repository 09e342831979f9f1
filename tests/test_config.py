"""SKYSCAN_* configuration: parsing, one-line errors, and secrets kept out of logs and the startup JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skymap_scanner.config import EnvConfig, read_env_config
from skymap_scanner.errors import ConfigError
from skymap_scanner.transport.mq import broker_settings, redact_address, split_password

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
TOKEN = "tok-Zq8x1SECRET"
PASSWORD = "pw-Kd93SECRET"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for k in list(os.environ):
        if k.startswith("SKYSCAN_"):
            monkeypatch.delenv(k)
    return monkeypatch


def test_defaults_mean_embedded_mode(clean_env: pytest.MonkeyPatch) -> None:
    cfg = read_env_config()
    assert not cfg.broker_mode and cfg.SKYSCAN_BROKER_CLIENT == "rabbitmq"
    assert cfg.SKYSCAN_MQ_TIMEOUT_TO_CLIENTS == 30 * 60
    assert cfg.SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS == 3 * 24 * 3600
    assert cfg.SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE == 60 * 60
    assert cfg.broker_auth() == ""


def test_values_are_parsed_and_typed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SKYSCAN_BROKER_CLIENT", "nats")
    clean_env.setenv("SKYSCAN_BROKER_ADDRESS", "nats://mq.example:4222")
    clean_env.setenv("SKYSCAN_MQ_TIMEOUT_TO_CLIENTS", "45")
    clean_env.setenv("SKYSCAN_PROGRESS_INTERVAL_SEC", "0.5")
    clean_env.setenv("SKYSCAN_LOG", "debug")
    cfg = read_env_config()
    assert cfg.broker_mode and cfg.SKYSCAN_BROKER_CLIENT == "nats"
    assert cfg.SKYSCAN_MQ_TIMEOUT_TO_CLIENTS == 45 and isinstance(cfg.SKYSCAN_MQ_TIMEOUT_TO_CLIENTS, int)
    assert cfg.SKYSCAN_PROGRESS_INTERVAL_SEC == 0.5


def test_read_at_start_up_not_at_import(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS", "77")
    assert read_env_config().SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS == 77
    clean_env.setenv("SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS", "78")
    assert read_env_config().SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS == 78


@pytest.mark.parametrize("name, value", [
    ("SKYSCAN_MQ_TIMEOUT_TO_CLIENTS", "soon"),
    ("SKYSCAN_MQ_TIMEOUT_TO_CLIENTS", "0"),
    ("SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS", "-5"),
    ("SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE", "1.5"),
    ("SKYSCAN_PROGRESS_INTERVAL_SEC", "fast"),
    ("SKYSCAN_BROKER_CLIENT", "kafka"),
    ("SKYSCAN_LOG", "LOUD"),
    ("SKYSCAN_LOG_THIRD_PARTY", "quiet"),
    ("SKYSCAN_MAX_ATTEMPTS", "0"),
    ("SKYSCAN_BATCH_SIZE", "-1"),
])
def test_bad_values_are_one_line_config_errors(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        read_env_config()
    assert "\n" not in str(e.value) and name in str(e.value)


def test_auth_from_file_and_missing_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    clean_env.setenv("SKYSCAN_BROKER_AUTH_FILE", str(f))
    assert read_env_config().broker_auth() == TOKEN
    clean_env.setenv("SKYSCAN_BROKER_AUTH", "direct")
    assert read_env_config().broker_auth() == "direct"  # the variable wins over the file
    clean_env.delenv("SKYSCAN_BROKER_AUTH")
    clean_env.setenv("SKYSCAN_BROKER_AUTH_FILE", str(tmp_path / "nope"))
    with pytest.raises(ConfigError) as e:
        read_env_config().broker_auth()
    assert "SKYSCAN_BROKER_AUTH_FILE" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("address, redacted", [
    ("127.0.0.1", "127.0.0.1"),
    ("user:pw@mq:5672/vh", "user@mq:5672/vh"),
    ("amqp://user:pw@mq:5672/vh", "amqp://user@mq:5672/vh"),
    ("amqps://:pw@mq", "amqps://@mq"),
    ("nats://a:b@n1:4222", "nats://a@n1:4222"),
    ("mq.example:5672", "mq.example:5672"),
])
def test_redact_address(address: str, redacted: str) -> None:
    assert redact_address(address) == redacted
    assert "pw" not in redact_address(address)


def test_rabbitmq_password_moves_from_the_address_to_the_token() -> None:
    s = broker_settings(EnvConfig(SKYSCAN_BROKER_ADDRESS=f"skyuser:{PASSWORD}@mq:5672"))
    assert s.address == "skyuser@mq:5672" and s.auth == PASSWORD
    s = broker_settings(EnvConfig(SKYSCAN_BROKER_ADDRESS=f"skyuser:{PASSWORD}@mq", SKYSCAN_BROKER_AUTH=TOKEN))
    assert s.address == "skyuser@mq" and s.auth == TOKEN  # an explicit token wins, as in mqclient
    # NATS takes credentials in its URL: left alone
    s = broker_settings(EnvConfig(SKYSCAN_BROKER_CLIENT="nats", SKYSCAN_BROKER_ADDRESS="nats://a:b@n:4222"))
    assert s.address == "nats://a:b@n:4222"
    assert split_password("host") == ("host", "")


def test_startup_json_has_no_secret(tmp_path: Path) -> None:
    from skymap_scanner.events import load_event
    from skymap_scanner.scan import ScanSpec
    from skymap_scanner.transport.mq import make_server_transport

    cfg = EnvConfig(SKYSCAN_BROKER_ADDRESS=f"amqp://skyuser:{PASSWORD}@mq.example:5672/scans",
                    SKYSCAN_BROKER_AUTH=TOKEN)
    spec = ScanSpec(load_event(SAMPLE), "dummy", {}, "8:0")
    transport = make_server_transport(cfg, spec, tmp_path / "startup.json")
    text = json.dumps(transport.startup_doc)
    assert PASSWORD not in text and TOKEN not in text
    assert transport.startup_doc["broker_address"] == "amqp://skyuser@mq.example:5672/scans"


def _run(module: str, args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=full,
                          timeout=timeout)


@pytest.mark.slow
def test_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    """Server and client against a broker address where nothing listens, with every log at DEBUG
    (third-party loggers too): they fail, log their reconnect attempts, and never print a secret."""
    env = {
        "SKYSCAN_BROKER_ADDRESS": f"skyuser:{PASSWORD}@127.0.0.1:9",  # port 9 (discard): refused
        "SKYSCAN_BROKER_AUTH": TOKEN,
        "SKYSCAN_LOG": "DEBUG",
        "SKYSCAN_LOG_THIRD_PARTY": "DEBUG",
        "SKYSCAN_MQ_TIMEOUT_TO_CLIENTS": "2",
        "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS": "3",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "2",
    }
    startup = tmp_path / "startup.json"
    server = _run("skymap_scanner.server", ["--event-file", str(SAMPLE), "--reco-algo", "dummy", "--nsides", "8:0",
                                            "--output-dir", str(tmp_path / "out"), "--client-startup-json",
                                            str(startup), "--no-products"], env)
    assert server.returncode == 2, server.stderr[-3000:]
    assert "SKYSCAN_MQ_TIMEOUT_TO_CLIENTS" in server.stderr.splitlines()[-1]
    assert "skyuser@127.0.0.1:9" in server.stderr  # the address is logged, redacted
    assert "Requested MQClient" in server.stderr  # mqclient's own logging (which prints the address) is on
    doc = json.loads(startup.read_text())
    assert doc.pop("scan_over")["reason"] == "failed"  # a client of this failed scan would exit at once:
    startup.write_text(json.dumps(doc))  # unmarked, it tries the broker (and logs its attempts)
    client = _run("skymap_scanner.client", ["--client-startup-json", str(startup)], env)
    assert "reconnecting" in client.stderr
    for out in (server.stdout, server.stderr, client.stdout, client.stderr, startup.read_text()):
        assert PASSWORD not in out and TOKEN not in out


def test_pulsar_without_its_extra_fails_at_once(tmp_path: Path) -> None:
    """Pulsar is an install extra; without it the server stops with one line instead of retrying."""
    try:
        import pulsar  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the pulsar extra is installed here (this checks the message when it is not)")
    env = {"SKYSCAN_BROKER_CLIENT": "pulsar", "SKYSCAN_BROKER_ADDRESS": "pulsar://127.0.0.1:6650"}
    proc = _run("skymap_scanner.server", ["--event-file", str(SAMPLE), "--reco-algo", "dummy", "--nsides", "8:0",
                                          "--output-dir", str(tmp_path / "out"), "--client-startup-json",
                                          str(tmp_path / "startup.json"), "--no-products"], env, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("skymap_scanner.server: error: cannot set up a pulsar queue") and "extra" in last
    assert "Traceback" not in proc.stderr
