"""One settings object: every setting of the bake-off declared once here, with its type and where its default lives.

Two kinds of setting, each field of a section dataclass below:

* run-time settings (a plain field): read inside tasks by :func:`settings` / :func:`load_settings` from the config
  file (``TAILOR_CONFIG``, else the packaged ``config/defaults.yaml``, which holds their documented defaults) with
  ``TAILOR__SECTION__KEY`` environment overrides. The ``pricing`` section of the same file is the cost model's
  price table and usage assumptions (:attr:`Settings.prices`, :attr:`Settings.usage`).
* parse-time settings (``parse_time(default)``: the default is declared here, on the field): what DAG wiring needs
  while Airflow parses the files (asset URIs, the SQS watcher, sensor intervals, Param defaults). They come from
  the environment only, never from a file, so :func:`parse_time_setting` is cheap at DAG parse time (no YAML, no
  file I/O); :func:`load_settings` gives the same values, and refuses a config file that sets one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailor.exceptions import ConfigError

if TYPE_CHECKING:
    from tailor.cost import Prices, Usage

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "defaults.yaml"
DEFAULT_BUCKET = "tailor-bakeoff"
ENV_PREFIX = "TAILOR__"
#: Judges from three model families other than the generator's (Meta Llama), each Active and invocable in us-east-1
#: (the runbook's region) as of 2026-11: Amazon Nova Pro (bare id), Anthropic Claude Haiku 4.5 and DeepSeek-R1
#: (inference profiles: AWS serves them there only so). Nova and Claude take a forced tool call; DeepSeek-R1 has no
#: tool use through Converse and answers in JSON text (tailor.model_access.tool_choice). Override the default with
#: TAILOR__EVALUATION__JUDGE_MODELS (comma-separated) or per run with the judge_models Param; weekly_evaluation
#: checks every judge's lifecycle and access (GetFoundationModel) before the first model call.
DEFAULT_JUDGE_MODELS = ("amazon.nova-pro-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "us.deepseek.r1-v1:0")

_PARSE_TIME = "parse_time"


def parse_time(default: Any) -> Any:
    """Declare a parse-time setting (environment only) and its default: a dataclass field."""
    return field(default=default, metadata={_PARSE_TIME: True})


def variable(section: str, key: str) -> str:
    """The environment variable of a setting, e.g. ``TAILOR__KNOWLEDGE_BASE__TOP_K``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


@dataclass(frozen=True)
class AirflowSettings:
    # Cloud calls are flaky: 60 s between task retries. The local stack sets 1.
    retry_delay_seconds: int = parse_time(60)


@dataclass(frozen=True)
class CatalogSettings:
    quarantine_prefix: str
    current_marker_key: str
    max_bytes: int
    max_name_chars: int
    # Parse time: the manual-run Param's key pattern and the polling DAG's sensor.
    incoming_prefix: str = parse_time("catalog/incoming/")
    versions_prefix: str = parse_time("catalog/versions/")
    suffix: str = parse_time(".txt")


@dataclass(frozen=True)
class KnowledgeBaseSettings:
    name: str
    data_source_name: str
    knowledge_base_id: str
    data_source_id: str
    data_prefix: str
    embedding_model_arn: str
    chunk_max_tokens: int
    chunk_overlap_percent: int
    top_k: int
    # Parse time: the ingestion sensor's poke interval and timeout.
    ingestion_poll_seconds: int = parse_time(10)
    ingestion_timeout_minutes: int = parse_time(60)


@dataclass(frozen=True)
class AwsSettings:
    conn_id: str
    # Parse time: asset URIs and the SQS watcher of catalog_kb_sync.
    bucket: str = parse_time(DEFAULT_BUCKET)
    #: The SQS queue receiving the bucket's catalog/incoming/*.txt notifications; empty: no watcher (manual runs
    #: or catalog_kb_sync_poll only).
    catalog_queue_url: str = parse_time("")


@dataclass(frozen=True)
class QASettings:
    test_set: str
    train_set: str


@dataclass(frozen=True)
class FinetuneSettings:
    method: str
    jumpstart_model_id: str
    jumpstart_model_version: str
    accept_eula: bool
    inference_image_uri: str
    role_arn: str
    training_instance_type: str
    endpoint_instance_type: str
    epochs: int
    learning_rate: float
    max_input_length: int
    max_model_len: int
    per_device_train_batch_size: int
    lora_r: int
    lora_alpha: int
    max_runtime_seconds: int
    champion_endpoint: str
    promote_margin: float
    eval_sample_limit: int
    max_new_tokens: int
    # Parse time: how often the training/deployment sensors poll and how long an endpoint may take to come up.
    poll_seconds: int = parse_time(60)
    endpoint_timeout_seconds: int = parse_time(2 * 3600)
    # 1: a person approves each promotion in the Airflow UI (human-in-the-loop ApprovalOperator) before it happens
    require_approval: int = parse_time(0)


@dataclass(frozen=True)
class MetricsSettings:
    bertscore_model: str
    bertscore_layers: int


@dataclass(frozen=True)
class EvaluationSettings:
    generator_model_id: str
    max_tokens: int
    temperature: float
    batch_size: int
    concurrency: int
    output_prefix: str
    report_note: str
    max_run_cost_usd: float
    golden_limit: int  # golden-set items the judges re-score every run (0: all); see docs/golden-set.md
    # Alerts (tailor.alerts) through Airflow's notifiers; empty: findings are logged and stored, nobody is notified.
    alert_smtp_conn_id: str
    alert_email_to: str  # comma-separated
    alert_slack_conn_id: str
    alert_slack_channel: str
    # Parse time: weekly_evaluation's wiring and Param defaults.
    judge_models: tuple[str, ...] = parse_time(DEFAULT_JUDGE_MODELS)
    on_asset_updates: int = parse_time(0)  # 1: also run when the KB sync or a new champion updates an asset
    judge_context_chars: int = parse_time(6000)
    min_judges: int = parse_time(2)


@dataclass(frozen=True)
class Settings:
    aws: AwsSettings
    catalog: CatalogSettings
    knowledge_base: KnowledgeBaseSettings
    qa: QASettings
    finetune: FinetuneSettings
    metrics: MetricsSettings
    evaluation: EvaluationSettings
    airflow: AirflowSettings
    prices: Prices  # the config file's pricing section (tailor.cost), not overridable by environment variables
    usage: Usage

    def require(self, section: str, key: str) -> Any:
        """Return a setting that must be non-empty, or raise naming the variable that sets it."""
        value = getattr(getattr(self, section), key)
        if value in ("", None):
            where = "" if is_parse_time(_declared(section, key)) else f" (or edit {DEFAULT_CONFIG.name})"
            raise ConfigError(f"setting {section}.{key} is empty: set {variable(section, key)}{where}")
        return value


#: The sections of :class:`Settings` that are declared above, by name.
SECTIONS: dict[str, type[Any]] = {
    "aws": AwsSettings,
    "catalog": CatalogSettings,
    "knowledge_base": KnowledgeBaseSettings,
    "qa": QASettings,
    "finetune": FinetuneSettings,
    "metrics": MetricsSettings,
    "evaluation": EvaluationSettings,
    "airflow": AirflowSettings,
}


def _boolean(value: Any) -> bool:
    """A YAML boolean, or its text from an environment override (true/false, case-insensitive)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(value)
    return text == "true"


def _names(value: Any) -> tuple[str, ...]:
    """A comma-separated list (or a YAML list) of names, blanks dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


_CONVERTERS: dict[str, Any] = {"int": int, "float": float, "bool": _boolean, "tuple[str, ...]": _names}
_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "tuple[str, ...]": "a list of names"}


def _convert(section: str, f: Field[Any], value: Any) -> Any:
    try:
        return _CONVERTERS.get(str(f.type), str)(value)
    except (TypeError, ValueError):
        kind = _KINDS.get(str(f.type), "text")
        raise ConfigError(f"setting {section}.{f.name}={value!r} must be {kind} "
                          f"(from {variable(section, f.name)} or the config file)") from None


def is_parse_time(f: Field[Any]) -> bool:
    return bool(f.metadata.get(_PARSE_TIME))


def _parse_time_value(section: str, f: Field[Any], env: Mapping[str, str]) -> Any:
    """A parse-time setting: its environment variable, or the declared default when unset or empty."""
    raw = env.get(variable(section, f.name))
    if raw is None or (raw == "" and str(f.type) != "str"):
        return f.default
    try:
        return _CONVERTERS.get(str(f.type), str)(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{variable(section, f.name)}={raw!r} must be {_KINDS.get(str(f.type), 'text')}") from None


def _declared(section: str, key: str) -> Field[Any]:
    cls = SECTIONS.get(section)
    found = {f.name: f for f in fields(cls)} if cls else {}
    if key not in found:
        raise ConfigError(f"no setting {section}.{key} is declared in tailor.config")
    return found[key]


_UNSET: Any = object()


def parse_time_setting(section: str, key: str, default: Any = _UNSET) -> Any:
    """A setting that DAG wiring needs at parse time, e.g. ``parse_time_setting("evaluation", "min_judges")``:
    ``TAILOR__SECTION__KEY``, else the default declared on its field. Environment only, no file I/O, no YAML.

    ``default`` is deprecated (the declaration holds it); when a caller still passes one it must equal the declared
    default, so a call site can no longer drift from the declaration unnoticed.
    """
    f = _declared(section.lower(), key.lower())
    if not is_parse_time(f):
        raise ConfigError(f"setting {section}.{key} is not read at parse time: use settings() inside a task")
    if default is not _UNSET and default != f.default:
        raise ConfigError(f"parse_time_setting({section!r}, {key!r}, {default!r}): the declared default is "
                          f"{f.default!r} (tailor.config); drop the default at the call site")
    return _parse_time_value(section.lower(), f, os.environ)


def parse_time_variables() -> dict[str, Any]:
    """Every parse-time setting's environment variable and its declared default."""
    return {variable(name, f.name): f.default for name, cls in SECTIONS.items() for f in fields(cls)
            if is_parse_time(f)}


def bucket() -> str:
    """The bake-off's S3 bucket (``TAILOR__AWS__BUCKET``): cheap enough for DAG parse time."""
    return str(parse_time_setting("aws", "bucket"))


def _section(cls: type[Any], name: str, raw: dict[str, Any], env: dict[str, str]) -> Any:
    values = dict(raw.get(name) or {})
    kwargs = {}
    for f in fields(cls):
        if is_parse_time(f):
            if f.name in values:
                raise ConfigError(f"setting {name}.{f.name} is read at DAG parse time, from the environment only: "
                                  f"set {variable(name, f.name)} instead of the config file")
            kwargs[f.name] = _parse_time_value(name, f, env)
            continue
        override = env.get(variable(name, f.name))
        value = override if override is not None else values.get(f.name)
        if value is None:
            raise ConfigError(f"setting {name}.{f.name} is missing from the config file")
        kwargs[f.name] = _convert(name, f, value)
    return cls(**kwargs)


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the config file (``path``, else ``TAILOR_CONFIG``, else the packaged defaults) and apply the
    environment (``env``, else ``os.environ``): every section, parse-time settings and the price table."""
    import yaml

    from tailor.cost import parse_prices

    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get("TAILOR_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found (set TAILOR_CONFIG to its path)") from None
    sections = {name: _section(cls, name, raw, env) for name, cls in SECTIONS.items()}
    prices, usage = parse_prices(raw.get("pricing") or {})
    loaded = Settings(**sections, prices=prices, usage=usage)
    check_layout(loaded)
    return loaded


#: Prefixes the DAGs write under whatever the config says (fine-tuning runs, generated QA sets).
FIXED_PREFIXES = {"finetune outputs": "finetune/", "generated QA sets": "qa/"}


def is_folder(prefix: str) -> bool:
    """An S3 "folder" prefix of its own: non-empty, ending in ``/``, not starting with ``/``, no empty segment."""
    return bool(prefix) and prefix.endswith("/") and not prefix.startswith("/") and "//" not in prefix


def check_layout(cfg: Settings) -> None:
    """The bucket layout must keep each task in its own folder: every prefix non-empty, ending in ``/`` and
    disjoint from the others, because the catalog sync deletes what it does not want under ``data_prefix``."""
    prefixes = {
        "catalog.incoming_prefix": cfg.catalog.incoming_prefix,
        "catalog.quarantine_prefix": cfg.catalog.quarantine_prefix,
        "catalog.versions_prefix": cfg.catalog.versions_prefix,
        "knowledge_base.data_prefix": cfg.knowledge_base.data_prefix,
        "evaluation.output_prefix": cfg.evaluation.output_prefix,
    }
    for name, prefix in prefixes.items():
        if not is_folder(prefix):
            raise ConfigError(f"setting {name}={prefix!r} must be a folder such as 'kb-data/': non-empty, ending "
                              f"in '/', not starting with '/' ({ENV_PREFIX}{name.upper().replace('.', '__')})")
    folders = prefixes | {f"(fixed) {what}": prefix for what, prefix in FIXED_PREFIXES.items()}
    folders["catalog.current_marker_key"] = cfg.catalog.current_marker_key
    names = list(folders)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = folders[first], folders[second]
            if a.startswith(b) or b.startswith(a):
                raise ConfigError(f"settings {first}={a!r} and {second}={b!r} overlap: each prefix needs its own "
                                  "folder (the sync deletes stale objects under knowledge_base.data_prefix)")
    if cfg.catalog.max_name_chars < 1 or cfg.catalog.max_bytes < 1:
        raise ConfigError("settings catalog.max_name_chars and catalog.max_bytes must be positive")


@cache
def settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
