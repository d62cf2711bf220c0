"""One settings object, read from ``config/defaults.yaml`` and ``TAILOR__SECTION__KEY`` environment overrides.

Call :func:`load_settings` inside tasks (never at DAG parse time); the only values read at parse time are the
ones asset URIs need, and those come from the environment alone (:func:`bucket`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from tailor.exceptions import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "defaults.yaml"
DEFAULT_BUCKET = "tailor-bakeoff"
ENV_PREFIX = "TAILOR__"


def bucket() -> str:
    """The bake-off's S3 bucket (``TAILOR__AWS__BUCKET``): cheap enough for DAG parse time."""
    return os.environ.get(f"{ENV_PREFIX}AWS__BUCKET", DEFAULT_BUCKET)


def parse_time_setting(section: str, key: str, default: int) -> int:
    """An integer knob that DAG wiring needs at parse time: environment only, no file I/O."""
    raw = os.environ.get(f"{ENV_PREFIX}{section.upper()}__{key.upper()}")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{section.upper()}__{key.upper()}={raw!r} must be an integer") from None


def parse_time_text(section: str, key: str, default: str) -> str:
    """A text knob that DAG wiring needs at parse time (e.g. a Param's pattern): environment only, no file I/O."""
    return os.environ.get(f"{ENV_PREFIX}{section.upper()}__{key.upper()}", default)


@dataclass(frozen=True)
class CatalogSettings:
    incoming_prefix: str
    quarantine_prefix: str
    versions_prefix: str
    current_marker_key: str
    suffix: str
    max_bytes: int
    max_name_chars: int


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


@dataclass(frozen=True)
class AwsSettings:
    conn_id: str
    catalog_queue_url: str
    bucket: str


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


@dataclass(frozen=True)
class Settings:
    aws: AwsSettings
    catalog: CatalogSettings
    knowledge_base: KnowledgeBaseSettings
    qa: QASettings
    finetune: FinetuneSettings
    metrics: MetricsSettings
    evaluation: EvaluationSettings

    def require(self, section: str, key: str) -> Any:
        """Return a setting that must be non-empty, or raise naming the variable that sets it."""
        value = getattr(getattr(self, section), key)
        if value in ("", None):
            raise ConfigError(
                f"setting {section}.{key} is empty: set {ENV_PREFIX}{section.upper()}__{key.upper()} "
                f"(or edit {DEFAULT_CONFIG.name})"
            )
        return value


def _boolean(value: Any) -> bool:
    """A YAML boolean, or its text from an environment override (true/false, case-insensitive)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(value)
    return text == "true"


def _section(cls: type, name: str, raw: dict[str, Any], env: dict[str, str]) -> Any:
    values = dict(raw.get(name) or {})
    kwargs = {}
    for f in fields(cls):
        override = env.get(f"{ENV_PREFIX}{name.upper()}__{f.name.upper()}")
        value = override if override is not None else values.get(f.name)
        if value is None:
            raise ConfigError(f"setting {name}.{f.name} is missing from the config file")
        try:
            kwargs[f.name] = {"int": int, "float": float, "bool": _boolean}.get(str(f.type), str)(value)
        except ValueError:
            kind = {"int": "an integer", "bool": "true or false"}.get(str(f.type), "a number")
            raise ConfigError(
                f"setting {name}.{f.name}={value!r} must be {kind} "
                f"(from {ENV_PREFIX}{name.upper()}__{f.name.upper()} or the config file)"
            ) from None
    return cls(**kwargs)


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the YAML (``TAILOR_CONFIG`` or the packaged defaults) and apply environment overrides."""
    import yaml

    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get("TAILOR_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found (set TAILOR_CONFIG to its path)") from None
    raw.setdefault("aws", {})["bucket"] = env.get(f"{ENV_PREFIX}AWS__BUCKET", DEFAULT_BUCKET)
    loaded = Settings(
        aws=_section(AwsSettings, "aws", raw, env),
        catalog=_section(CatalogSettings, "catalog", raw, env),
        knowledge_base=_section(KnowledgeBaseSettings, "knowledge_base", raw, env),
        qa=_section(QASettings, "qa", raw, env),
        finetune=_section(FinetuneSettings, "finetune", raw, env),
        metrics=_section(MetricsSettings, "metrics", raw, env),
        evaluation=_section(EvaluationSettings, "evaluation", raw, env),
    )
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
