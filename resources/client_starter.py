#!/usr/bin/env python3
"""Start skymap_scanner clients as HTCondor jobs (Apptainer/Singularity image), for one scan.

Writes an HTCondor submit description for ``--jobs N`` long-lived clients, each running
``python -m skymap_scanner.client --client-startup-json <the transferred startup JSON>`` inside
``--singularity-image``; with ``--submit`` it also submits it through the ``htcondor`` Python
bindings, with ``--dry-run`` it only prints it. It first waits until the server has written the
client-startup JSON (the server writes it atomically once it is ready).

Environment variables whose names start with SKYSCAN_, EWMS_, PULSAR_ or RABBITMQ_ are forwarded to
the jobs. A broker token (SKYSCAN_BROKER_AUTH) is not put in the submit description: it goes into a
file readable only by the submitter, transferred with the job and named by SKYSCAN_BROKER_AUTH_FILE;
a SKYSCAN_BROKER_AUTH_FILE set here is transferred the same way. Values of other variables whose
names look secret are replaced by ``<redacted>`` when the description is printed.

Only the standard library is used (the ``htcondor`` bindings only for ``--submit``, imported then),
so this runs on a submit node without skymap_scanner installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_REQUIREMENTS = "HAS_CVMFS_icecube_opensciencegrid_org && has_avx"
DEFAULT_EXECUTABLE = "/opt/skyscan/bin/python"  # the image's virtual environment (see Dockerfile)
FORWARD_PREFIXES = ("SKYSCAN_", "EWMS_", "PULSAR_", "RABBITMQ_")
SECRET_NAME_RE = re.compile(r"AUTH|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE|_KEY$", re.IGNORECASE)
AUTH_FILE_NAME = "skyscan_broker_auth"  # name of the token file in the job's scratch directory
REDACTED = "<redacted>"
# Client options the starter sets itself (the job's mode and its input); refused in --client-args-json.
RESERVED_CLIENT_OPTIONS = ("--client-startup-json", "--infile", "--outfile")
# the password of an address such as amqp://user:PASSWORD@host:5672/ or user:PASSWORD@host
USERINFO_PASSWORD_RE = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:@/\s]*:)[^@/\s]+@")
SIZE_RE = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B?)?\s*$", re.IGNORECASE)


class StarterError(Exception):
    """A wrong argument or setting; ``str()`` is one line for the user (exit code 2)."""


class WaitTimeout(Exception):
    """The client-startup JSON did not appear in time (exit code 1)."""


# ---------------------------------------------------------------------------------------------------
# pure logic: argument checks, quoting, the submit description


def client_args_from_json(text: str) -> list[str]:
    """Turn ``--client-args-json`` into client arguments.

    The JSON is an object mapping option names (``"--name"``) to a value: a string or number gives
    ``--name VALUE``, ``true`` gives ``--name`` alone, ``false``/``null`` omit it, a list gives
    ``--name V1 V2 ...``. Options the starter sets itself, or abbreviations of them, are refused.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise StarterError(f"--client-args-json is not valid JSON: {e.msg} (at character {e.pos})") from None
    if not isinstance(obj, dict):
        raise StarterError(
            '--client-args-json must be a JSON object of options, e.g. \'{"--log-level": "debug"}\''
        )
    args: list[str] = []
    for name, value in obj.items():
        if not re.fullmatch(r"--[A-Za-z0-9][A-Za-z0-9_-]*", name):
            raise StarterError(f"--client-args-json: {name!r} is not an option name like '--some-option'")
        for reserved in RESERVED_CLIENT_OPTIONS:
            if reserved.startswith(name):  # argparse would take an abbreviation as the option itself
                raise StarterError(
                    f"--client-args-json may not contain {name} (the client's {reserved} is set by "
                    f"client_starter.py; give the startup JSON as client_starter.py --client-startup-json)"
                )
        if value is True:
            args.append(name)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            if not value or not all(_is_scalar(v) for v in value):
                raise StarterError(
                    f"--client-args-json: {name} must be a non-empty list of strings or numbers"
                )
            args.append(name)
            args.extend(str(v) for v in value)
        elif _is_scalar(value):
            args.extend([name, str(value)])
        else:
            raise StarterError(
                f"--client-args-json: {name} has a value of unsupported type {type(value).__name__}"
            )
    return args


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool)


def check_size(option: str, value: str) -> str:
    """Validate an HTCondor size such as ``8GB``, ``512MB`` or ``4000`` (MB); returns it stripped."""
    if not SIZE_RE.match(value):
        raise StarterError(f"{option} must be a size like 8GB, 512MB or 4000 (MB), got {value!r}")
    return value.strip()


def condor_quote_args(args: Sequence[str]) -> str:
    """Quote ``args`` in HTCondor's new ``arguments`` syntax: ``"a 'b c' 'it''s'"``.

    Each argument is wrapped in single quotes (a single quote inside is doubled) and a double
    quote anywhere is doubled, the whole then wrapped in double quotes.
    """
    return '"' + " ".join(_condor_single_quote(a) for a in args).replace('"', '""') + '"'


def condor_quote_environment(env: Mapping[str, str]) -> str:
    """Quote ``env`` in HTCondor's new ``environment`` syntax: ``"A=1 B='x y'"``."""
    for name in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise StarterError(f"cannot forward environment variable {name!r}: not a plain name")
    parts = [f"{name}={_condor_single_quote(value)}" for name, value in env.items()]
    return '"' + " ".join(parts).replace('"', '""') + '"'


def _condor_single_quote(s: str) -> str:
    if "\n" in s or "\r" in s:
        raise StarterError("arguments and environment values for HTCondor cannot contain line breaks")
    return "'" + s.replace("'", "''") + "'"


def forwarded_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables forwarded to the jobs: exactly those with one of ``FORWARD_PREFIXES``, sorted."""
    return {k: environ[k] for k in sorted(environ) if k.startswith(FORWARD_PREFIXES)}


def looks_secret(name: str) -> bool:
    """Whether a variable's value should not be printed (tokens, passwords, keys)."""
    return name != "SKYSCAN_BROKER_AUTH_FILE" and bool(SECRET_NAME_RE.search(name))


@dataclass(frozen=True)
class JobSpec:
    """Everything the submit description is made of (paths absolute, sizes as HTCondor reads them)."""

    jobs: int
    singularity_image: str
    startup_json: Path
    logs_dir: Path
    memory: str = "8GB"
    disk: str = "1GB"
    cpus: int = 1
    requirements: str = DEFAULT_REQUIREMENTS
    executable: str = DEFAULT_EXECUTABLE
    client_args: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    # host path of the broker token file transferred with the job (None: no token file)
    auth_file: Path | None = None


def prepare_environment(
    environ: Mapping[str, str], logs_dir: Path
) -> tuple[dict[str, str], Path | None, str | None]:
    """Split the environment into (job environment, host token file to transfer, token to write there).

    SKYSCAN_BROKER_AUTH is replaced by SKYSCAN_BROKER_AUTH_FILE naming a file in the job's scratch
    directory; the token is returned so the caller can write it (mode 600) to the returned path.
    """
    env = forwarded_environment(environ)
    token = env.pop("SKYSCAN_BROKER_AUTH", None)
    auth_path = env.pop("SKYSCAN_BROKER_AUTH_FILE", None)
    if token is not None and auth_path is not None:
        raise StarterError("set only one of SKYSCAN_BROKER_AUTH and SKYSCAN_BROKER_AUTH_FILE")
    if token is not None:
        host_file: Path | None = logs_dir / AUTH_FILE_NAME
    elif auth_path is not None:
        if not auth_path:
            raise StarterError("SKYSCAN_BROKER_AUTH_FILE is set but empty")
        host_file = Path(auth_path).absolute()
    else:
        host_file = None
    if host_file is not None:
        env["SKYSCAN_BROKER_AUTH_FILE"] = host_file.name  # transferred into the scratch directory
        env = dict(sorted(env.items()))
    return env, host_file, token


def submit_description(spec: JobSpec) -> dict[str, str]:
    """The submit description as ordered ``command -> value`` pairs (without the ``queue`` line)."""
    if spec.jobs < 1:
        raise StarterError(f"--jobs must be at least 1, got {spec.jobs}")
    if spec.cpus < 1:
        raise StarterError(f"--cpus must be at least 1, got {spec.cpus}")
    if not spec.singularity_image.strip():
        raise StarterError("--singularity-image is empty")
    transfer = [spec.startup_json]
    if spec.auth_file is not None:
        if spec.auth_file.name == spec.startup_json.name:
            raise StarterError(
                f"the startup JSON and the broker token file share the name {spec.auth_file.name}; rename one"
            )
        transfer.append(spec.auth_file)
    for path in transfer:
        if "," in str(path):  # transfer_input_files is comma-separated
            raise StarterError(f"cannot transfer a file whose path contains a comma: {path}")
    client_args = ["-m", "skymap_scanner.client", "--client-startup-json", spec.startup_json.name]
    client_args += list(spec.client_args)
    desc = {
        "universe": "vanilla",
        "+SingularityImage": '"' + spec.singularity_image.replace('"', r"\"") + '"',
        "executable": spec.executable,
        "transfer_executable": "false",
        "arguments": condor_quote_args(client_args),
        "environment": condor_quote_environment(spec.environment),
        "requirements": spec.requirements,
        "request_cpus": str(spec.cpus),
        "request_memory": spec.memory,
        "request_disk": spec.disk,
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_input_files": ", ".join(str(p) for p in transfer),
        "log": str(spec.logs_dir / "clients.log"),
        "output": str(spec.logs_dir / "client-$(ClusterId).$(ProcId).out"),
        "error": str(spec.logs_dir / "client-$(ClusterId).$(ProcId).err"),
    }
    return desc


def render_description(desc: Mapping[str, str], jobs: int) -> str:
    """The submit file text: ``command = value`` lines and ``queue JOBS``."""
    lines = ["# skymap_scanner clients, written by resources/client_starter.py"]
    lines += [f"{key} = {value}" for key, value in desc.items()]
    lines.append(f"queue {jobs}")
    return "\n".join(lines) + "\n"


def redact_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for printing: values of secret-looking variables, and passwords inside addresses
    (``user:PASSWORD@host``), replaced by ``<redacted>``."""
    return {
        k: (REDACTED if looks_secret(k) else USERINFO_PASSWORD_RE.sub(rf"\1{REDACTED}@", v))
        for k, v in env.items()
    }


# ---------------------------------------------------------------------------------------------------
# I/O at the edges: waiting, writing, submitting


def wait_for_startup_json(
    path: Path,
    timeout_s: float,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Wait until the server has written ``path``; return its decoded content (a JSON object)."""
    deadline = clock() + timeout_s
    told = False
    while not path.is_file():
        if clock() >= deadline:
            raise WaitTimeout(f"{path} did not appear within {timeout_s:g} s; is the server running?")
        if not told:
            print(f"client_starter.py: waiting for {path} (up to {timeout_s:g} s)", file=sys.stderr)
            told = True
        sleep(poll_s)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StarterError(f"{path}: not a readable JSON client-startup file ({type(e).__name__})") from None
    if not isinstance(content, dict):
        raise StarterError(f"{path}: the client-startup JSON must be a JSON object")
    return content


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the owner only (it may hold a token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), stat.S_IRUSR | stat.S_IWUSR)
        f.write(text)


def import_htcondor() -> Any:
    """The htcondor bindings, imported only for --submit; a clear error when they are missing."""
    try:
        import htcondor  # type: ignore[import-not-found]
    except ImportError:
        raise StarterError(
            "--submit needs the htcondor Python bindings, which are not installed "
            "(pip install 'htcondor<25'); or run without --submit and use condor_submit on the written file"
        ) from None
    return htcondor


def submit(
    htcondor: Any, desc: Mapping[str, str], jobs: int, collector: str | None, schedd_name: str | None
) -> int:
    """Submit through the htcondor bindings; returns the cluster id."""
    try:
        if collector or schedd_name:
            coll = htcondor.Collector(collector) if collector else htcondor.Collector()
            if schedd_name:
                ad = coll.locate(htcondor.DaemonTypes.Schedd, schedd_name)
            else:
                ad = coll.locate(htcondor.DaemonTypes.Schedd)
            schedd = htcondor.Schedd(ad)
        else:
            schedd = htcondor.Schedd()
        result = schedd.submit(htcondor.Submit(dict(desc)), count=jobs)
    except Exception as e:  # the bindings raise their own, undocumented exception types
        raise StarterError(f"HTCondor refused the submission: {type(e).__name__}: {e}") from None
    return int(result.cluster())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="client_starter.py",
        description="Write (and with --submit, submit) an HTCondor submit description for skymap_scanner clients.",
    )
    p.add_argument("--jobs", type=int, required=True, help="number of client jobs")
    p.add_argument(
        "--client-startup-json",
        type=Path,
        required=True,
        help="the server's client-startup JSON; waited for, then transferred to every job",
    )
    p.add_argument(
        "--singularity-image",
        required=True,
        help="Apptainer/Singularity image of the scanner (e.g. an unpacked image on CVMFS)",
    )
    p.add_argument("--memory", default="8GB", help="request_memory per job (default 8GB)")
    p.add_argument("--disk", default="1GB", help="request_disk per job (default 1GB)")
    p.add_argument("--cpus", type=int, default=1, help="request_cpus per job (default 1)")
    p.add_argument(
        "--requirements",
        default=DEFAULT_REQUIREMENTS,
        help=f"HTCondor requirements expression (default: {DEFAULT_REQUIREMENTS})",
    )
    p.add_argument(
        "--client-args-json",
        default="{}",
        help='extra client options as a JSON object, e.g. \'{"--some-option": "value", "--some-flag": true}\'',
    )
    p.add_argument(
        "--executable",
        default=DEFAULT_EXECUTABLE,
        help=f"python inside the image (default {DEFAULT_EXECUTABLE})",
    )
    p.add_argument(
        "--logs-dir",
        type=Path,
        default=Path("skyscan-client-logs"),
        help="directory for the submit file, the HTCondor log and the jobs' stdout/stderr",
    )
    p.add_argument(
        "--startup-json-timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for the client-startup JSON before giving up (default 3600)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the submit description; write nothing")
    mode.add_argument("--submit", action="store_true", help="also submit it with the htcondor bindings")
    p.add_argument("--collector", default=None, help="collector to find the schedd with (--submit)")
    p.add_argument("--schedd", default=None, help="schedd name (--submit; default: the local schedd)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        memory = check_size("--memory", args.memory)
        disk = check_size("--disk", args.disk)
        client_args = client_args_from_json(args.client_args_json)
        if args.startup_json_timeout < 0:
            raise StarterError("--startup-json-timeout must be >= 0")
        logs_dir = args.logs_dir.absolute()
        startup_json = args.client_startup_json.absolute()
        env, auth_file, token = prepare_environment(os.environ, logs_dir)
        spec = JobSpec(
            jobs=args.jobs,
            singularity_image=args.singularity_image,
            startup_json=startup_json,
            logs_dir=logs_dir,
            memory=memory,
            disk=disk,
            cpus=args.cpus,
            requirements=args.requirements,
            executable=args.executable,
            client_args=tuple(client_args),
            environment=env,
            auth_file=auth_file,
        )
        desc = submit_description(spec)  # checks everything before the (possibly long) wait
        htcondor = import_htcondor() if args.submit else None
        wait_for_startup_json(startup_json, args.startup_json_timeout)
        if args.dry_run:
            shown = {**desc, "environment": condor_quote_environment(redact_secrets(env))}
            sys.stdout.write(render_description(shown, args.jobs))
            return 0
        if token is not None and auth_file is not None:
            write_private(auth_file, token)
        submit_file = logs_dir / "clients.submit"
        write_private(submit_file, render_description(desc, args.jobs))
        print(f"client_starter.py: wrote {submit_file}", file=sys.stderr)
        if args.submit:
            cluster = submit(htcondor, desc, args.jobs, args.collector, args.schedd)
            print(
                f"client_starter.py: submitted {args.jobs} client job(s) as cluster {cluster}",
                file=sys.stderr,
            )
        else:
            print(f"client_starter.py: submit with: condor_submit {submit_file}", file=sys.stderr)
        return 0
    except StarterError as e:
        print(f"client_starter.py: {e}", file=sys.stderr)
        return 2
    except WaitTimeout as e:
        print(f"client_starter.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
