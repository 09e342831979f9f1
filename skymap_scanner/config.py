"""One typed configuration, read from the environment at start-up (never at import).

Every variable begins with ``SKYSCAN_``; see the README for what each is for.
Secrets (``SKYSCAN_BROKER_AUTH``, ``SKYSCAN_SKYDRIVER_AUTH``) are never logged.
"""



import dataclasses as dc
import logging
from pathlib import Path

from .errors import ConfigError

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
BROKER_CLIENTS = ("rabbitmq", "pulsar", "nats")


@dc.dataclass(frozen=True)
class EnvConfig:
    """Settings from ``SKYSCAN_*`` environment variables (defaults in parentheses)."""

    SKYSCAN_BROKER_CLIENT: str = "rabbitmq"  # rabbitmq | pulsar | nats
    SKYSCAN_BROKER_ADDRESS: str = ""  # empty = embedded mode (local worker processes)
    SKYSCAN_BROKER_AUTH: str = ""  # token / password; never logged
    SKYSCAN_BROKER_AUTH_FILE: str = ""  # file holding the token (alternative to SKYSCAN_BROKER_AUTH)
    SKYSCAN_MQ_TIMEOUT_TO_CLIENTS: int = 30 * 60  # s a publish may block before the server gives up
    SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS: int = 3 * 24 * 3600  # s the server waits with no reply at all
    SKYSCAN_MQ_HEARTBEAT_SEC: float = 30.0  # broker heartbeat (RabbitMQ) / ping (NATS) period, s
    # s: RabbitMQ x-expires / NATS max_age on the scan's queues, a safety net for a crashed server (4 days:
    # see transport/mq.py); 0 declares them exactly as stock mqclient does, which the EWMS pilot needs
    SKYSCAN_MQ_QUEUE_EXPIRY_SEC: float = 4 * 24 * 3600.0
    SKYSCAN_TIMEOUT_NO_FIT_SEC: float = 4 * 3600.0  # s without one successful fit before the scan fails
    SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE: int = 60 * 60  # s a client waits for its first pixel
    SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE: int = 10 * 60  # s a client waits for more work before exiting
    SKYSCAN_LOG: str = "INFO"
    SKYSCAN_LOG_THIRD_PARTY: str = "WARNING"
    SKYSCAN_PROGRESS_INTERVAL_SEC: float = 5.0  # progress log + scan-manifest.json period
    SKYSCAN_RESULT_INTERVAL_SEC: float = 60.0  # partial result period
    SKYSCAN_SKYDRIVER_ADDRESS: str = ""  # SkyDriver REST base URL (optional)
    SKYSCAN_SKYDRIVER_AUTH: str = ""  # SkyDriver token; never logged
    SKYSCAN_SKYDRIVER_SCAN_ID: str = ""  # the id SkyDriver knows this scan by (default: the scan id)
    SKYSCAN_LEASE_MIN_SEC: float = 120.0  # least time before an unanswered batch is re-sent
    SKYSCAN_MAX_ATTEMPTS: int = 3  # reco failures on one (pixel, posvar) before it is recorded as failed
    SKYSCAN_BATCH_SIZE: int = 0  # (pixel, posvar) fits per message; 0 = choose from the reco's speed
    SKYSCAN_MAX_PIXEL_RECO_TIME: float = 1800.0  # s one fit may take: the cap on a started batch's lease per fit (see leases.py)
    SKYSCAN_SKYDRIVER_POLL_SEC: float = 60.0  # s between kill-switch polls of SkyDriver's scan status
    SKYSCAN_EXTERNAL_RECO: str = ""  # command of the `external` reco when no --reco-option command=... is given

    def broker_auth(self) -> str:
        """The broker token from SKYSCAN_BROKER_AUTH or SKYSCAN_BROKER_AUTH_FILE."""
        if self.SKYSCAN_BROKER_AUTH:
            return self.SKYSCAN_BROKER_AUTH
        if self.SKYSCAN_BROKER_AUTH_FILE:
            try:
                return Path(self.SKYSCAN_BROKER_AUTH_FILE).read_text().strip()
            except OSError as e:
                raise ConfigError(f"SKYSCAN_BROKER_AUTH_FILE: cannot read {self.SKYSCAN_BROKER_AUTH_FILE} "
                                  f"({e.strerror})") from None
        return ""

    @property
    def broker_mode(self) -> bool:
        return bool(self.SKYSCAN_BROKER_ADDRESS)


def read_env_config() -> EnvConfig:
    """Read and check :class:`EnvConfig`; raises :class:`ConfigError` with one line."""
    from wipac_dev_tools import from_environment_as_dataclass

    try:
        cfg = from_environment_as_dataclass(EnvConfig, log_vars=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"bad SKYSCAN_* environment: {e}") from None
    if cfg.SKYSCAN_BROKER_CLIENT not in BROKER_CLIENTS:
        raise ConfigError(f"SKYSCAN_BROKER_CLIENT={cfg.SKYSCAN_BROKER_CLIENT!r} is not one of {BROKER_CLIENTS}")
    for name in ("SKYSCAN_LOG", "SKYSCAN_LOG_THIRD_PARTY"):
        if getattr(cfg, name).upper() not in LOG_LEVELS:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} is not one of {LOG_LEVELS}")
    for name in ("SKYSCAN_PROGRESS_INTERVAL_SEC", "SKYSCAN_RESULT_INTERVAL_SEC", "SKYSCAN_LEASE_MIN_SEC",
                 "SKYSCAN_TIMEOUT_NO_FIT_SEC", "SKYSCAN_MAX_PIXEL_RECO_TIME", "SKYSCAN_SKYDRIVER_POLL_SEC",
                 "SKYSCAN_MQ_HEARTBEAT_SEC",
                 "SKYSCAN_MQ_TIMEOUT_TO_CLIENTS", "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS",
                 "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE", "SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    if cfg.SKYSCAN_MQ_QUEUE_EXPIRY_SEC < 0:
        raise ConfigError("SKYSCAN_MQ_QUEUE_EXPIRY_SEC must be >= 0 (0: no expiry)")
    if cfg.SKYSCAN_MAX_ATTEMPTS < 1 or cfg.SKYSCAN_BATCH_SIZE < 0:
        raise ConfigError("SKYSCAN_MAX_ATTEMPTS must be >= 1 and SKYSCAN_BATCH_SIZE >= 0")
    return cfg


def setup_logging(cfg: EnvConfig) -> None:
    """Log set-up via wipac-dev-tools: first-party at SKYSCAN_LOG, the rest quieter."""
    from wipac_dev_tools import logging_tools

    def drop_setup_lines(record: logging.LogRecord) -> bool:
        # set_level logs one INFO line per logger it configures (14 here): noise for a person
        return not str(record.msg).endswith(")") or " Logger: '" not in str(record.msg)

    root = logging.getLogger()
    root.addFilter(drop_setup_lines)
    try:
        logging_tools.set_level(
            cfg.SKYSCAN_LOG.upper(),  # type: ignore[arg-type]
            first_party_loggers="skymap_scanner",
            third_party_level=cfg.SKYSCAN_LOG_THIRD_PARTY.upper(),  # type: ignore[arg-type]
            future_third_parties=["pika", "mqclient", "nats", "pulsar", "urllib3", "matplotlib", "healpy"],
            formatter=logging_tools.WIPACDevToolsFormatter(include_line_location=False),
        )
    finally:
        root.removeFilter(drop_setup_lines)
    if cfg.SKYSCAN_LOG_THIRD_PARTY.upper() != "DEBUG":
        # pika logs every lost or refused connection as ERROR with a traceback; the transport logs
        # one WARNING line per reconnect attempt with the reason instead
        for name in ("pika", "mqclient.rabbitmq"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
