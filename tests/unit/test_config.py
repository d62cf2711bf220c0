"""Unit tests of tailor.config: packaged defaults, TAILOR__SECTION__KEY overrides and the error messages."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from tailor.config import (
    DEFAULT_BUCKET,
    DEFAULT_CONFIG,
    DEFAULT_JUDGE_MODELS,
    SECTIONS,
    AirflowSettings,
    AwsSettings,
    CatalogSettings,
    KnowledgeBaseSettings,
    Settings,
    bucket,
    is_parse_time,
    load_settings,
    parse_time_setting,
    parse_time_variables,
)
from tailor.exceptions import ConfigError, TailorError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_config_is_the_packaged_yaml() -> None:
    assert DEFAULT_CONFIG == REPO_ROOT / "include" / "config" / "defaults.yaml"
    assert DEFAULT_CONFIG.is_file()


def test_load_settings_defaults() -> None:
    settings = load_settings(env={})
    assert isinstance(settings, Settings)
    assert settings.aws == AwsSettings(conn_id="aws_default", catalog_queue_url="", bucket=DEFAULT_BUCKET)
    assert settings.airflow == AirflowSettings(retry_delay_seconds=60)
    assert settings.aws.bucket == "tailor-bakeoff"
    assert settings.catalog == CatalogSettings(
        incoming_prefix="catalog/incoming/",
        quarantine_prefix="catalog/quarantine/",
        versions_prefix="catalog/versions/",
        current_marker_key="catalog/current.json",
        suffix=".txt",
        max_bytes=5242880,
        max_name_chars=200,
    )
    kb = settings.knowledge_base
    assert isinstance(kb, KnowledgeBaseSettings)
    assert kb.name == "tailor-product-catalog"
    assert kb.data_source_name == "product-catalog"
    assert kb.knowledge_base_id == ""
    assert kb.data_source_id == ""
    assert kb.data_prefix == "kb-data/"
    assert kb.embedding_model_arn.endswith("amazon.titan-embed-text-v2:0")
    assert (kb.chunk_max_tokens, kb.chunk_overlap_percent, kb.top_k) == (300, 20, 3)
    for value in (kb.chunk_max_tokens, kb.chunk_overlap_percent, kb.top_k, settings.catalog.max_bytes):
        assert type(value) is int


def test_load_settings_ignores_os_environ_when_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__TOP_K", "9")
    monkeypatch.setenv("TAILOR__AWS__BUCKET", "from-os-environ")
    settings = load_settings(env={})
    assert settings.knowledge_base.top_k == 3
    assert settings.aws.bucket == DEFAULT_BUCKET


def test_load_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR_CONFIG", raising=False)
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__TOP_K", "9")
    monkeypatch.setenv("TAILOR__AWS__BUCKET", "from-os-environ")
    settings = load_settings()
    assert settings.knowledge_base.top_k == 9
    assert settings.aws.bucket == "from-os-environ"


def test_env_overrides() -> None:
    settings = load_settings(env={
        "TAILOR__KNOWLEDGE_BASE__TOP_K": "5",
        "TAILOR__AWS__BUCKET": "my-bucket",
        "TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID": "KB12345678",
        "TAILOR__CATALOG__MAX_BYTES": "1024",
        "TAILOR__AWS__CATALOG_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123/q",
    })
    assert settings.knowledge_base.top_k == 5
    assert type(settings.knowledge_base.top_k) is int
    assert settings.aws.bucket == "my-bucket"
    assert settings.knowledge_base.knowledge_base_id == "KB12345678"
    assert settings.catalog.max_bytes == 1024
    assert settings.aws.catalog_queue_url == "https://sqs.us-east-1.amazonaws.com/123/q"
    # Untouched settings keep their defaults.
    assert settings.knowledge_base.chunk_max_tokens == 300
    assert settings.catalog.suffix == ".txt"


def test_env_override_with_empty_string_replaces_string_default() -> None:
    settings = load_settings(env={"TAILOR__CATALOG__SUFFIX": ""})
    assert settings.catalog.suffix == ""


@pytest.mark.parametrize(("section", "line"), [("aws", "bucket: from-the-file"),
                                             ("aws", "catalog_queue_url: https://sqs/q"),
                                             ("catalog", "suffix: .md"),
                                             ("knowledge_base", "ingestion_poll_seconds: 5")])
def test_a_parse_time_setting_in_a_config_file_is_refused(tmp_path: Path, section: str, line: str) -> None:
    """DAG parsing never reads the file: a value there would differ between parse time and the tasks."""
    config = tmp_path / "config.yaml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
        f"{section}:\n", f"{section}:\n  {line}\n", 1), encoding="utf-8")
    key = line.split(":")[0]
    with pytest.raises(ConfigError, match=rf"{section}\.{key} is read at DAG parse time.*"
                                          rf"TAILOR__{section.upper()}__{key.upper()}"):
        load_settings(config, env={})


@pytest.mark.parametrize("value", ["five", "5.0", "", " "])
def test_invalid_int_override_raises_config_error(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"TAILOR__KNOWLEDGE_BASE__TOP_K": value})
    message = str(caught.value)
    assert "knowledge_base.top_k" in message
    assert repr(value) in message
    assert "must be an integer" in message


def test_invalid_int_in_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace(
        "max_bytes: 5242880", "max_bytes: lots"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"catalog\.max_bytes='lots' must be an integer"):
        load_settings(config, env={})


def test_config_error_is_a_tailor_value_error() -> None:
    with pytest.raises(ValueError):
        load_settings(env={"TAILOR__CATALOG__MAX_BYTES": "x"})
    assert issubclass(ConfigError, TailorError)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing, env={})
    assert str(missing) in str(caught.value)
    assert "TAILOR_CONFIG" in str(caught.value)


def test_missing_config_file_from_tailor_config_env(tmp_path: Path) -> None:
    missing = tmp_path / "from-env.yaml"
    with pytest.raises(ConfigError, match="from-env.yaml"):
        load_settings(env={"TAILOR_CONFIG": str(missing)})


def test_tailor_config_env_selects_file(tmp_path: Path) -> None:
    config = tmp_path / "custom.yaml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace("top_k: 3", "top_k: 7"), encoding="utf-8")
    assert load_settings(env={"TAILOR_CONFIG": str(config)}).knowledge_base.top_k == 7
    # An explicit path wins over TAILOR_CONFIG.
    assert load_settings(DEFAULT_CONFIG, env={"TAILOR_CONFIG": str(config)}).knowledge_base.top_k == 3


def test_setting_missing_from_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace("  top_k: 3\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"knowledge_base\.top_k is missing"):
        load_settings(config, env={})
    # ... unless the environment provides it.
    assert load_settings(config, env={"TAILOR__KNOWLEDGE_BASE__TOP_K": "4"}).knowledge_base.top_k == 4


def test_require_empty_knowledge_base_id() -> None:
    settings = load_settings(env={})
    with pytest.raises(ConfigError) as caught:
        settings.require("knowledge_base", "knowledge_base_id")
    message = str(caught.value)
    assert "TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID" in message
    assert "knowledge_base.knowledge_base_id" in message
    assert "defaults.yaml" in message


def test_require_returns_set_value() -> None:
    settings = load_settings(env={"TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID": "KB12345678"})
    assert settings.require("knowledge_base", "knowledge_base_id") == "KB12345678"
    assert settings.require("knowledge_base", "top_k") == 3
    with pytest.raises(ConfigError, match="TAILOR__AWS__CATALOG_QUEUE_URL"):
        settings.require("aws", "catalog_queue_url")


def test_finetune_has_no_fake_role_and_resolves_jumpstart_at_run_time() -> None:
    ft = load_settings(env={}).finetune
    assert ft.role_arn == ""  # production must set it; the local stack sets its own (devstack LOCAL_SCALE)
    with pytest.raises(ConfigError, match="TAILOR__FINETUNE__ROLE_ARN"):
        load_settings(env={}).require("finetune", "role_arn")
    assert (ft.jumpstart_model_id, ft.jumpstart_model_version) == ("meta-textgeneration-llama-3-1-8b-instruct",
                                                                   "2.16.2")
    assert ft.accept_eula is True
    # the image, script and weights come from JumpStart; the emulator's knob is the local AWS's own (env)
    for gone in ("training_image_uri", "base_model_uri", "local_trainable_layers"):
        assert not hasattr(ft, gone)
    assert "local_trainable_layers" not in DEFAULT_CONFIG.read_text()


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("TRUE", True), (" True ", True)])
def test_boolean_override(raw: str, value: bool) -> None:
    assert load_settings(env={"TAILOR__FINETUNE__ACCEPT_EULA": raw}).finetune.accept_eula is value


def test_invalid_boolean_override_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"finetune.accept_eula='yes' must be true or false .*"
                                          r"TAILOR__FINETUNE__ACCEPT_EULA"):
        load_settings(env={"TAILOR__FINETUNE__ACCEPT_EULA": "yes"})


# --- parse-time settings -------------------------------------------------------------------------------------


def test_parse_time_setting_default_comes_from_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS", raising=False)
    assert parse_time_setting("knowledge_base", "ingestion_poll_seconds") == 10
    monkeypatch.delenv("TAILOR__EVALUATION__MIN_JUDGES", raising=False)
    assert parse_time_setting("evaluation", "min_judges") == 2


def test_parse_time_setting_empty_uses_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS", "")
    assert parse_time_setting("knowledge_base", "ingestion_poll_seconds") == 10
    monkeypatch.setenv("TAILOR__AWS__CATALOG_QUEUE_URL", "")  # text: empty is a value (no queue)
    assert parse_time_setting("aws", "catalog_queue_url") == ""


def test_parse_time_setting_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__INGESTION_TIMEOUT_MINUTES", "15")
    value = parse_time_setting("knowledge_base", "ingestion_timeout_minutes")
    assert value == 15
    assert type(value) is int


def test_parse_time_setting_uses_upper_case_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS", "3")
    assert parse_time_setting("Knowledge_Base", "Ingestion_Poll_Seconds") == 3


def test_parse_time_judge_models_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR__EVALUATION__JUDGE_MODELS", raising=False)
    assert parse_time_setting("evaluation", "judge_models") == DEFAULT_JUDGE_MODELS
    monkeypatch.setenv("TAILOR__EVALUATION__JUDGE_MODELS", " a.model-v1:0 ,, us.b.model-v2:0 ")
    assert parse_time_setting("evaluation", "judge_models") == ("a.model-v1:0", "us.b.model-v2:0")


def test_a_default_repeated_at_a_call_site_must_match_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR__EVALUATION__MIN_JUDGES", raising=False)
    assert parse_time_setting("evaluation", "min_judges", 2) == 2  # the old three-argument form still works
    with pytest.raises(ConfigError, match=r"declared default is 2"):
        parse_time_setting("evaluation", "min_judges", 3)


@pytest.mark.parametrize(("section", "key", "says"), [("knowledge_base", "top_k", "not read at parse time"),
                                                      ("evaluation", "no_such_key", "no setting"),
                                                      ("nowhere", "min_judges", "no setting")])
def test_parse_time_setting_refuses_what_is_not_a_declared_parse_time_setting(section: str, key: str,
                                                                                says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_time_setting(section, key)


def test_parse_time_settings_are_part_of_the_settings_object() -> None:
    env = {"TAILOR__EVALUATION__MIN_JUDGES": "3", "TAILOR__AIRFLOW__RETRY_DELAY_SECONDS": "1",
           "TAILOR__AWS__CATALOG_QUEUE_URL": "https://sqs/q", "TAILOR__CATALOG__SUFFIX": ".md"}
    cfg = load_settings(env=env)
    assert (cfg.evaluation.min_judges, cfg.airflow, cfg.aws.catalog_queue_url, cfg.catalog.suffix) == (
        3, AirflowSettings(retry_delay_seconds=1), "https://sqs/q", ".md")
    defaults = load_settings(env={})
    assert (defaults.finetune.poll_seconds, defaults.finetune.endpoint_timeout_seconds) == (60, 7200)
    assert defaults.evaluation.judge_models == DEFAULT_JUDGE_MODELS
    # every declared parse-time setting: one environment variable, its default in the settings object
    declared = parse_time_variables()
    assert len(declared) == sum(is_parse_time(f) for cls in SECTIONS.values() for f in fields(cls)) == 15
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if is_parse_time(f):
                assert getattr(getattr(defaults, name), f.name) == declared[f"TAILOR__{name.upper()}__"
                                                                            f"{f.name.upper()}"]


def test_parse_time_settings_never_import_yaml() -> None:
    """The parse-time accessor is cheap: a fresh interpreter reads every parse-time setting without yaml."""
    import subprocess
    import sys

    code = ("import sys; from tailor.config import parse_time_setting, parse_time_variables; "
            "[parse_time_setting(*v.lower().split('__')[1:]) for v in parse_time_variables()]; "
            "print(sorted(m for m in ('yaml', 'boto3', 'botocore', 'tailor.cost') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO_ROOT / "include")}).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("raw", ["ten", "1.5", "10s"])
def test_parse_time_setting_invalid(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS", raw)
    with pytest.raises(ConfigError) as caught:
        parse_time_setting("knowledge_base", "ingestion_poll_seconds")
    message = str(caught.value)
    assert "TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS" in message
    assert repr(raw) in message
    assert "must be an integer" in message


def test_bucket_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR__AWS__BUCKET", raising=False)
    assert bucket() == DEFAULT_BUCKET
    monkeypatch.setenv("TAILOR__AWS__BUCKET", "other-bucket")
    assert bucket() == "other-bucket"


@pytest.mark.parametrize(
    "variable,value,says",
    [("KNOWLEDGE_BASE__DATA_PREFIX", "", "must be a folder"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "kb-data", "must be a folder"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "/kb-data/", "must be a folder"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "catalog/", "overlap"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "catalog/versions/kb/", "overlap"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "finetune/", "overlap"),
     ("KNOWLEDGE_BASE__DATA_PREFIX", "eval/", "overlap"),
     ("EVALUATION__OUTPUT_PREFIX", "kb-data/eval/", "overlap"),
     ("CATALOG__QUARANTINE_PREFIX", "", "must be a folder"),
     ("CATALOG__CURRENT_MARKER_KEY", "kb-data/current.json", "overlap")],
)
def test_layouts_that_would_let_a_sync_delete_other_data_are_refused_at_load(variable: str, value: str,
                                                                              says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_settings(env={f"TAILOR__{variable}": value})


def test_a_layout_of_separate_folders_is_accepted() -> None:
    cfg = load_settings(env={"TAILOR__KNOWLEDGE_BASE__DATA_PREFIX": "kb/docs/", "TAILOR__EVALUATION__OUTPUT_PREFIX":
                             "results/weekly/"})
    assert (cfg.knowledge_base.data_prefix, cfg.evaluation.output_prefix) == ("kb/docs/", "results/weekly/")


def test_serving_context_is_a_setting_of_its_own() -> None:
    """finetune.max_model_len (the endpoint's OPTION_MAX_MODEL_LEN) is not the training max_input_length."""
    ft = load_settings(env={}).finetune
    assert (ft.max_model_len, ft.max_input_length) == (4096, 1024)
    assert type(ft.max_model_len) is int
    overridden = load_settings(env={"TAILOR__FINETUNE__MAX_MODEL_LEN": "8192"}).finetune
    assert (overridden.max_model_len, overridden.max_input_length) == (8192, 1024)
    with pytest.raises(ConfigError, match=r"finetune\.max_model_len='4k' must be an integer"):
        load_settings(env={"TAILOR__FINETUNE__MAX_MODEL_LEN": "4k"})
