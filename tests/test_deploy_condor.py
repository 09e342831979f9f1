"""resources/client_starter.py: the HTCondor submit description it prints, writes and submits."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "resources" / "client_starter.py"


def load_starter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("client_starter", STARTER)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["client_starter"] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


cs = load_starter()


def run_starter(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, str(STARTER), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def parse_submit(text: str) -> tuple[dict[str, str], str]:
    """A submit description's ``key = value`` commands and its queue statement (the last line)."""
    commands: dict[str, str] = {}
    queue = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("queue"):
            queue = line
            continue
        key, sep, value = line.partition(" = ")
        assert sep, f"not a 'key = value' line: {line!r}"
        assert key not in commands, f"{key} given twice"
        commands[key] = value
    return commands, queue


def parse_condor_list(value: str) -> list[str]:
    """Inverse of HTCondor's new quoting (``"a 'b c' 'it''s'"``), written independently of the starter."""
    assert value.startswith('"') and value.endswith('"'), value
    body = value[1:-1].replace('""', '"')
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == " ":
            i += 1
            continue
        token = ""
        while i < len(body) and body[i] != " ":
            if body[i] == "'":
                i += 1
                while True:
                    if body[i] == "'" and body[i + 1 : i + 2] == "'":
                        token += "'"
                        i += 2
                    elif body[i] == "'":
                        i += 1
                        break
                    else:
                        token += body[i]
                        i += 1
            else:
                token += body[i]
                i += 1
        out.append(token)
    return out


def parse_environment(value: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in parse_condor_list(value))


@pytest.fixture
def startup(tmp_path: Path) -> Path:
    path = tmp_path / "scan" / "startup.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"reco_algo": "dummy"}))
    return path


def base_args(startup: Path, *more: str) -> list[str]:
    return [
        "--jobs", "7", "--client-startup-json", str(startup), "--singularity-image",
        "/cvmfs/icecube.opensciencegrid.org/containers/realtime/skymap_scanner:v3.1", *more,
    ]  # fmt: skip


EXPECTED_KEYS = {
    "universe", "+SingularityImage", "executable", "transfer_executable", "arguments", "environment",
    "requirements", "request_cpus", "request_memory", "request_disk", "should_transfer_files",
    "when_to_transfer_output", "transfer_input_files", "log", "output", "error",
}  # fmt: skip


def test_dry_run_prints_every_field_from_the_arguments(startup: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {"SKYSCAN_BROKER_CLIENT": "rabbitmq", "SKYSCAN_BROKER_ADDRESS": "mq.example:5672/", "EWMS_X": "a b",
           "PULSAR_Y": "1", "RABBITMQ_Z": "q'uote", "OTHER": "no", "SKYSCANNER": "no"}  # fmt: skip
    proc = run_starter(
        base_args(
            startup, "--memory", "6GB", "--cpus", "2", "--disk", "3GB", "--requirements", "has_avx2",
            "--client-args-json", '{"--log-level": "debug", "--flag": true, "--off": false, "--many": [1, "two"]}',
            "--logs-dir", str(logs), "--dry-run",
        ),
        env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    desc, queue = parse_submit(proc.stdout)
    assert set(desc) == EXPECTED_KEYS
    assert queue == "queue 7"
    assert desc["universe"] == "vanilla"
    assert (
        desc["+SingularityImage"]
        == '"/cvmfs/icecube.opensciencegrid.org/containers/realtime/skymap_scanner:v3.1"'
    )
    assert desc["executable"] == "/opt/skyscan/bin/python"
    assert desc["transfer_executable"] == "false"
    assert desc["request_memory"] == "6GB"
    assert desc["request_cpus"] == "2"
    assert desc["request_disk"] == "3GB"
    assert desc["requirements"] == "has_avx2"
    assert desc["should_transfer_files"] == "YES"
    # the startup JSON is transferred, and the client reads it from the job's scratch directory
    assert desc["transfer_input_files"] == str(startup)
    assert parse_condor_list(desc["arguments"]) == [
        "-m", "skymap_scanner.client", "--client-startup-json", "startup.json",
        "--log-level", "debug", "--flag", "--many", "1", "two",
    ]  # fmt: skip
    assert parse_environment(desc["environment"]) == {
        k: v for k, v in env.items() if k not in ("OTHER", "SKYSCANNER")
    }
    assert desc["log"] == str(logs / "clients.log")
    assert desc["output"] == str(logs / "client-$(ClusterId).$(ProcId).out")
    assert desc["error"] == str(logs / "client-$(ClusterId).$(ProcId).err")
    assert not logs.exists(), "--dry-run writes nothing"


def test_defaults(startup: Path, tmp_path: Path) -> None:
    proc = run_starter(base_args(startup, "--dry-run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    desc, _ = parse_submit(proc.stdout)
    assert desc["requirements"] == "HAS_CVMFS_icecube_opensciencegrid_org && has_avx"
    assert desc["request_memory"] == "8GB"
    assert desc["request_cpus"] == "1"
    assert parse_environment(desc["environment"]) == {}
    assert desc["log"] == str(tmp_path / "skyscan-client-logs" / "clients.log")


@pytest.mark.parametrize(
    "client_args",
    [
        '{"--client-startup-json": "other.json"}',
        '{"--client-startup": "other.json"}',  # argparse would accept the abbreviation
        '{"--infile": "in.json"}',
        '{"--outfile": "out.json"}',
    ],
)
def test_reserved_client_options_refused(startup: Path, client_args: str) -> None:
    proc = run_starter(base_args(startup, "--client-args-json", client_args, "--dry-run"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    name = next(iter(json.loads(client_args)))
    assert line.startswith(f"client_starter.py: --client-args-json may not contain {name} ")
    assert "is set by client_starter.py" in line


@pytest.mark.parametrize(
    ("client_args", "message"),
    [
        ("not json", "--client-args-json is not valid JSON"),
        ('["--a", "1"]', "--client-args-json must be a JSON object"),
        ('{"a": "1"}', "'a' is not an option name"),
        ('{"--a": {"b": 1}}', "--a has a value of unsupported type dict"),
        ('{"--a": []}', "--a must be a non-empty list"),
    ],
)
def test_bad_client_args_refused(startup: Path, client_args: str, message: str) -> None:
    proc = run_starter(base_args(startup, "--client-args-json", client_args, "--dry-run"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--memory", "lots"], "--memory must be a size"),
        (["--disk=-1GB"], "--disk must be a size"),
        (["--cpus", "0"], "--cpus must be at least 1"),
        (["--startup-json-timeout=-1"], "--startup-json-timeout must be >= 0"),
    ],
)
def test_bad_arguments_refused(startup: Path, more: list[str], message: str) -> None:
    proc = run_starter(base_args(startup, *more, "--dry-run"))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_zero_jobs_refused(startup: Path) -> None:
    args = base_args(startup, "--dry-run")
    args[1] = "0"
    proc = run_starter(args)
    assert proc.returncode == 2
    assert "--jobs must be at least 1" in proc.stderr


def test_waits_for_the_startup_json(tmp_path: Path) -> None:
    startup = tmp_path / "later" / "startup.json"
    startup.parent.mkdir()
    timer = threading.Timer(1.5, lambda: startup.write_text("{}"))
    timer.start()
    try:
        t0 = time.monotonic()
        proc = run_starter(base_args(startup, "--dry-run", "--startup-json-timeout", "30"))
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
    assert proc.returncode == 0, proc.stderr
    assert "waiting for" in proc.stderr
    assert elapsed >= 1.4
    assert parse_submit(proc.stdout)[0]["transfer_input_files"] == str(startup)


def test_gives_up_when_the_startup_json_never_appears(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = run_starter(base_args(tmp_path / "never.json", "--dry-run", "--startup-json-timeout", "1"))
    assert proc.returncode == 1
    assert time.monotonic() - t0 >= 1.0
    assert "did not appear within 1 s" in proc.stderr
    assert proc.stdout == ""


def test_startup_json_must_be_a_json_object(startup: Path) -> None:
    startup.write_text("[1, 2")
    proc = run_starter(base_args(startup, "--dry-run"))
    assert proc.returncode == 2
    assert "not a readable JSON client-startup file" in proc.stderr


def test_wait_uses_the_clock_it_is_given(tmp_path: Path) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    with pytest.raises(cs.WaitTimeout):
        cs.wait_for_startup_json(tmp_path / "x.json", 5.0, poll_s=1.0, sleep=fake_sleep, clock=lambda: now[0])
    assert sum(sleeps) == pytest.approx(5.0)


def test_broker_token_goes_into_a_private_file_not_the_description(startup: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {
        "SKYSCAN_BROKER_AUTH": "tok3n-value",
        "SKYSCAN_BROKER_ADDRESS": "mq:5672/",
        "PULSAR_TOKEN": "pt0ken",
    }
    dry = run_starter(base_args(startup, "--logs-dir", str(logs), "--dry-run"), env)
    assert dry.returncode == 0, dry.stderr
    assert "tok3n-value" not in dry.stdout + dry.stderr
    assert "pt0ken" not in dry.stdout + dry.stderr  # other secret-looking values are redacted when printed
    desc, _ = parse_submit(dry.stdout)
    assert parse_environment(desc["environment"]) == {
        "PULSAR_TOKEN": "<redacted>",
        "SKYSCAN_BROKER_ADDRESS": "mq:5672/",
        "SKYSCAN_BROKER_AUTH_FILE": "skyscan_broker_auth",
    }
    assert desc["transfer_input_files"] == f"{startup}, {logs / 'skyscan_broker_auth'}"

    written = run_starter(base_args(startup, "--logs-dir", str(logs)), env)
    assert written.returncode == 0, written.stderr
    token_file = logs / "skyscan_broker_auth"
    assert token_file.read_text() == "tok3n-value"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    submit_file = logs / "clients.submit"
    assert stat.S_IMODE(submit_file.stat().st_mode) == 0o600
    text = submit_file.read_text()
    assert "tok3n-value" not in text
    # the file that is submitted carries the real value of the variables it forwards
    assert parse_environment(parse_submit(text)[0]["environment"])["PULSAR_TOKEN"] == "pt0ken"
    assert f"condor_submit {submit_file}" in written.stderr


def test_broker_auth_file_is_transferred(startup: Path, tmp_path: Path) -> None:
    token = tmp_path / "my.token"
    token.write_text("t")
    proc = run_starter(base_args(startup, "--dry-run"), {"SKYSCAN_BROKER_AUTH_FILE": str(token)})
    assert proc.returncode == 0, proc.stderr
    desc, _ = parse_submit(proc.stdout)
    assert desc["transfer_input_files"] == f"{startup}, {token}"
    assert parse_environment(desc["environment"]) == {"SKYSCAN_BROKER_AUTH_FILE": "my.token"}


def test_token_and_token_file_together_refused(startup: Path, tmp_path: Path) -> None:
    env = {"SKYSCAN_BROKER_AUTH": "x", "SKYSCAN_BROKER_AUTH_FILE": str(tmp_path / "t")}
    proc = run_starter(base_args(startup, "--dry-run"), env)
    assert proc.returncode == 2
    assert "set only one of SKYSCAN_BROKER_AUTH and SKYSCAN_BROKER_AUTH_FILE" in proc.stderr


def test_submit_without_htcondor_fails_clearly_before_writing(
    startup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "htcondor", None)  # makes `import htcondor` raise ImportError
    logs = tmp_path / "logs"
    code = cs.main(base_args(startup, "--submit", "--logs-dir", str(logs)))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "client_starter.py: --submit needs the htcondor Python bindings, which are not installed"
    )
    assert len(err.splitlines()) == 1
    assert not logs.exists()


class FakeHTCondor:
    """Stands in for the htcondor module: records the Submit and the Schedd.submit call."""

    class DaemonTypes:
        Schedd = "Schedd"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        fake = self

        class Submit(dict):  # type: ignore[type-arg]
            pass

        class Result:
            def cluster(self) -> int:
                return 4242

        class Schedd:
            def __init__(self, ad: Any = None) -> None:
                fake.calls.append(("Schedd", ad))

            def submit(self, sub: Any, count: int) -> Result:
                fake.calls.append(("submit", (dict(sub), count)))
                return Result()

        class Collector:
            def __init__(self, address: str | None = None) -> None:
                fake.calls.append(("Collector", address))

            def locate(self, daemon: str, name: str | None = None) -> dict[str, Any]:
                fake.calls.append(("locate", (daemon, name)))
                return {"Name": name}

        self.Submit = Submit
        self.Schedd = Schedd
        self.Collector = Collector


def test_submit_through_the_bindings(
    startup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeHTCondor()
    monkeypatch.setitem(sys.modules, "htcondor", fake)
    for k in [k for k in os.environ if k.startswith(cs.FORWARD_PREFIXES)]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SKYSCAN_BROKER_CLIENT", "nats")
    logs = tmp_path / "logs"
    code = cs.main(
        base_args(startup, "--submit", "--logs-dir", str(logs), "--collector", "cm", "--schedd", "s1")
    )
    assert code == 0, capsys.readouterr().err
    assert "submitted 7 client job(s) as cluster 4242" in capsys.readouterr().err
    assert fake.calls[0] == ("Collector", "cm")
    assert fake.calls[1] == ("locate", ("Schedd", "s1"))
    assert fake.calls[2] == ("Schedd", {"Name": "s1"})
    kind, (submitted, count) = fake.calls[3]
    assert kind == "submit" and count == 7
    written, queue = parse_submit((logs / "clients.submit").read_text())
    assert submitted == written  # what is submitted is what was written (and what --dry-run shows)
    assert queue == "queue 7"
    assert parse_environment(submitted["environment"]) == {"SKYSCAN_BROKER_CLIENT": "nats"}


# --- the quoting, against an independent parser ---------------------------------------------------------

ARG_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r\x00"), max_size=12
)


@settings(max_examples=200, derandomize=True)
@given(args=st.lists(ARG_TEXT, max_size=6))
@example(args=["it's", 'say "hi"', "", "a b", "''", '""'])
def test_argument_quoting_round_trips(args: list[str]) -> None:
    assert parse_condor_list(cs.condor_quote_args(args)) == args


@settings(max_examples=200, derandomize=True)
@given(env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), ARG_TEXT, max_size=5))
def test_environment_quoting_round_trips(env: dict[str, str]) -> None:
    assert parse_environment(cs.condor_quote_environment(env)) == env


def test_line_breaks_cannot_be_quoted() -> None:
    with pytest.raises(cs.StarterError, match="line breaks"):
        cs.condor_quote_args(["a\nqueue 1000"])


def test_forwarded_environment_is_exactly_the_prefixed_variables() -> None:
    environ = {
        "SKYSCAN_A": "1",
        "EWMS_B": "2",
        "PULSAR_C": "3",
        "RABBITMQ_D": "4",
        "SKYSCANX": "5",
        "HOME": "/h",
        "X_SKYSCAN_": "6",
    }
    assert cs.forwarded_environment(environ) == {
        "EWMS_B": "2",
        "PULSAR_C": "3",
        "RABBITMQ_D": "4",
        "SKYSCAN_A": "1",
    }


@pytest.mark.parametrize("value", ["8GB", "512MB", "4000", "1.5 GB", "2GiB", "100K"])
def test_sizes_accepted(value: str) -> None:
    assert cs.check_size("--memory", value) == value.strip()


def test_htcondor_itself_reads_the_description(
    startup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real bindings (when installed) turn the printed description into the job ads we mean."""
    monkeypatch.setenv("CONDOR_CONFIG", os.devnull)  # no pool here: only the submit-language parser is used
    htcondor = pytest.importorskip(
        "htcondor", reason="the htcondor bindings are not installed (pip install 'htcondor<25')"
    )
    env = {"SKYSCAN_BROKER_ADDRESS": "mq:5672/", "EWMS_X": "a 'b' \"c\""}
    args = base_args(
        startup, "--memory", "6GB", "--disk", "2GB", "--cpus", "3", "--logs-dir", str(tmp_path / "l")
    )
    args += ["--client-args-json", '{"--opt": "it\'s a \\"test\\"", "--flag": true}', "--dry-run"]
    proc = run_starter(args, env)
    assert proc.returncode == 0, proc.stderr
    sub = htcondor.Submit(proc.stdout)
    ads = list(sub.jobs(count=7))
    assert len(ads) == 7
    ad = ads[0]

    def v2(raw: str) -> str:  # a job ad holds the V2 string without the submit file's outer quotes
        return '"' + raw.replace('"', '""') + '"'

    assert parse_condor_list(v2(ad["Arguments"])) == [
        "-m", "skymap_scanner.client", "--client-startup-json", "startup.json", "--opt", 'it\'s a "test"', "--flag",
    ]  # fmt: skip
    assert parse_environment(v2(ad["Environment"])) == env
    assert ad["Cmd"] == "/opt/skyscan/bin/python" and ad["TransferExecutable"] is False
    assert (
        ad["SingularityImage"] == "/cvmfs/icecube.opensciencegrid.org/containers/realtime/skymap_scanner:v3.1"
    )
    assert ad["RequestMemory"] == 6 * 1024 and ad["RequestCpus"] == 3 and ad["RequestDisk"] == 2 * 1024 * 1024
    assert ad["TransferInput"] == str(startup)
    assert "HAS_CVMFS_icecube_opensciencegrid_org && has_avx" in str(ad["Requirements"])
    assert ad["UserLog"] == str(tmp_path / "l" / "clients.log")
    # --submit hands the bindings the same commands as a dict: it must mean the same jobs
    from_dict = list(htcondor.Submit(parse_submit(proc.stdout)[0]).jobs(count=1))[0]
    for key in (
        "Arguments",
        "Environment",
        "Cmd",
        "SingularityImage",
        "RequestMemory",
        "TransferInput",
        "Requirements",
    ):
        assert str(from_dict[key]) == str(ad[key]), key


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("guest:hunter2@mq.example:5672/", "guest:<redacted>@mq.example:5672/"),
        ("amqp://user:hunter2@mq.example/vhost", "amqp://user:<redacted>@mq.example/vhost"),
        ("mq.example:5672", "mq.example:5672"),
    ],
)
def test_password_in_broker_address_is_not_printed(
    startup: Path, tmp_path: Path, address: str, shown: str
) -> None:
    logs = tmp_path / "logs"
    env = {"SKYSCAN_BROKER_ADDRESS": address}
    dry = run_starter(base_args(startup, "--logs-dir", str(logs), "--dry-run"), env)
    assert dry.returncode == 0, dry.stderr
    assert "hunter2" not in dry.stdout + dry.stderr
    assert parse_environment(parse_submit(dry.stdout)[0]["environment"]) == {"SKYSCAN_BROKER_ADDRESS": shown}
    written = run_starter(base_args(startup, "--logs-dir", str(logs)), env)
    assert written.returncode == 0, written.stderr
    assert "hunter2" not in written.stderr
    text = (logs / "clients.submit").read_text()  # the jobs need the real address
    assert parse_environment(parse_submit(text)[0]["environment"]) == {"SKYSCAN_BROKER_ADDRESS": address}
