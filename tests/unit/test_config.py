from pathlib import Path

import pytest

from cumulus.config import CumulusConfig, load_config
from cumulus.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config == CumulusConfig()
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.triton.grpc_url == "127.0.0.1:8001"
    assert config.clickhouse_dsn.startswith("chdb:///")


def test_yaml_then_env_override(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  partitions: 6\ntriton:\n  grpc_port: 9001\n")
    config = load_config(path, env={"CUMULUS_TRITON__GRPC_PORT": "9101", "CUMULUS_STATE_DIR": "/srv/c"})
    assert config.kafka.partitions == 6
    assert config.triton.grpc_port == 9101  # env wins over the file
    assert config.state_dir == Path("/srv/c")


def test_unknown_field_names_file_field_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  bootstrap: x:1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert str(path) in text and "kafka.bootstrap" in text and "remove `kafka.bootstrap`" in text


def test_bad_env_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(env={"CUMULUS_KAFKA__PARTITIONS": "zero"})
    assert "CUMULUS_KAFKA__PARTITIONS" in str(err.value) and "kafka.partitions" in str(err.value)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, env={})


def test_out_of_range_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("triton:\n  max_batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"triton\.max_batch_size"):
        load_config(path, env={})


def test_list_fields_take_json_from_the_environment() -> None:
    config = load_config(env={"CUMULUS_ROUTER__CANARY_STEPS": "[0.1, 0.5]"})
    assert config.router.canary_steps == (0.1, 0.5)
    with pytest.raises(ConfigError, match="CUMULUS_ROUTER__CANARY_STEPS: not valid JSON"):
        load_config(env={"CUMULUS_ROUTER__CANARY_STEPS": "[0.1,"})


def test_every_student_is_served_by_triton_under_its_own_name() -> None:
    config = CumulusConfig.model_validate(
        {"trainer": {"students": [{"model": "smollm2-135m-instruct"}, {"model": "smollm2-360m-instruct"}]}}
    )
    assert config.served_models == {
        "live": config.triton.live_model,
        "small": "smollm2-135m-instruct",
        "smollm2-360m-instruct": "smollm2-360m-instruct",
    }
    assert config.triton_model_for("smollm2-135m-instruct") == config.triton_model_for("") == "small"
    assert CumulusConfig().ladder[0].model == CumulusConfig().triton.small_model  # no ladder: one rung


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"students": [{"model": "a", "cost_per_token": 1.0}]}, "give all of them"),
        ({"students": [{"model": "a"}, {"model": "a"}]}, "each model may appear once"),
        ({"students": [{"model": "live"}]}, "is a Triton model name"),
    ],
)
def test_a_ladder_that_cannot_be_priced_or_served_is_refused(
    trainer: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CumulusConfig.model_validate({"trainer": trainer})


def test_auto_dtype_serves_bf16_only_where_the_cpu_has_it_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    from cumulus.config import infrastructure

    config = CumulusConfig()
    assert config.triton.dtype == "auto"
    monkeypatch.setattr(infrastructure, "cpu_supports_bf16", lambda: True)
    assert config.triton.serving_dtype == "bfloat16"
    monkeypatch.setattr(infrastructure, "cpu_supports_bf16", lambda: False)
    assert config.triton.serving_dtype == "float32"  # emulated bf16 runs at half the speed of fp32
    pinned = CumulusConfig(triton={"dtype": "bfloat16"})  # type: ignore[arg-type]
    assert pinned.triton.serving_dtype == "bfloat16"
