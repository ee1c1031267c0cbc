"""DistillConfig: defaults are the published recipe, YAML < CLI flags, errors name the flag."""

from __future__ import annotations

import pytest
import yaml

from distilkit.config import DistillConfig, field_help, load_config, save_config

REQUIRED = {"teacher": "t", "student": "s", "data": "d", "output": "o"}


def test_defaults_are_the_distilbert_recipe():
    c = DistillConfig(**REQUIRED)
    assert (c.alpha_ce, c.alpha_mlm, c.alpha_cos, c.alpha_mse, c.alpha_clm) == (5.0, 2.0, 1.0, 0.0, 0.0)
    assert (c.temperature, c.mlm_probability, c.mask_replace, c.random_replace, c.mlm_smoothing) == (
        2.0,
        0.15,
        0.8,
        0.1,
        0.7,
    )
    assert (c.lr, c.warmup, c.beta1, c.beta2, c.adam_eps, c.max_grad_norm, c.epochs) == (
        5e-4,
        0.05,
        0.9,
        0.98,
        1e-6,
        5.0,
        3,
    )
    assert c.accumulation(1) == 4096 // 16 and c.accumulation(8) == 32


def test_yaml_is_overridden_by_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**REQUIRED, "alpha-ce": 1.0, "lr": 1e-3}))
    c = load_config(DistillConfig, path, {"lr": 2e-4, "alpha_mlm": None})
    assert (c.alpha_ce, c.lr, c.alpha_mlm) == (1.0, 2e-4, 2.0)
    save_config(c, tmp_path / "config.yaml", "distilkit distill")
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("# distilkit distill --config config.yaml\n")
    assert load_config(DistillConfig, tmp_path / "config.yaml", {}) == c


@pytest.mark.parametrize(
    "over, flag",
    [
        ({"alpha_ce": -1.0}, "--alpha-ce must be >= 0"),
        ({"temperature": 0.0}, "--temperature"),
        ({"mlm_probability": 0.0}, "--mlm-probability"),
        ({"mask_replace": 0.95}, "--mask-replace"),
        ({"warmup": 1.5}, "--warmup"),
        ({"precision": "fp8"}, "--precision must be one of"),
        ({"alpha_clm": 1.0}, "--alpha-clm and --alpha-mlm"),
        ({"teacher": ""}, "--teacher is required"),
        ({"max_steps": 0}, "--max-steps"),
    ],
)
def test_invalid_values_name_the_flag(over, flag):
    with pytest.raises(ValueError, match=flag):
        DistillConfig(**{**REQUIRED, **over})


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alpha_kl: 1.0\n")
    with pytest.raises(ValueError, match="alpha_kl"):
        load_config(DistillConfig, path, REQUIRED)


def test_every_field_has_help():
    for name in DistillConfig.__dataclass_fields__:
        assert field_help(DistillConfig, name), name


def test_precision_uses_the_dtype_names_and_still_reads_the_old_ones():
    assert DistillConfig(**REQUIRED, precision="bfloat16").precision == "bfloat16"
    with pytest.warns(FutureWarning, match="--precision bf16 is deprecated; use --precision bfloat16"):
        assert DistillConfig(**REQUIRED, precision="bf16").precision == "bfloat16"
    with pytest.raises(
        ValueError, match=r"--precision must be one of \['auto', 'float32', 'bfloat16', 'float16'\]"
    ):
        DistillConfig(**REQUIRED, precision="bf8")


def test_a_config_file_that_is_not_yaml_is_a_user_error(tmp_path):
    from distilkit.errors import UserError

    path = tmp_path / "c.yaml"
    path.write_text("lr: [1\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(DistillConfig, path, REQUIRED)


def test_finetune_glue_task_is_read_as_glue_spells_it_and_an_unknown_one_names_the_flag():
    from distilkit.config import FinetuneConfig
    from distilkit.errors import UserError

    base = {"task": "text-classification", "model": "m", "train": "t.tsv", "output": "out"}
    assert FinetuneConfig(**base, glue_task="sst2").glue_task == "SST-2"
    assert FinetuneConfig(**base, glue_task="sts-b").glue_task == "STS-B"
    with pytest.raises(UserError, match="--glue-task: unknown GLUE task 'sst'"):
        FinetuneConfig(**base, glue_task="sst")
