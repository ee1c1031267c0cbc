"""Server settings: each bad value is refused with the flag that sets it."""

from __future__ import annotations

import pytest

from distilkit.errors import UserError
from distilkit.serve.settings import ServeSettings, flag, parse_model_spec


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_batch_size": 0}, "--max-batch-size must be >= 1, got 0"),
        ({"max_wait_ms": -1.0}, "--max-wait-ms must be >= 0, got -1.0"),
        ({"regroup": -0.5}, "--regroup must be >= 0, got -0.5"),
        ({"timeout_s": 0.0}, "--timeout-s must be > 0, got 0.0"),
        ({"port": 70000}, "--port must be between 0 and 65535, got 70000"),
    ],
)
def test_bad_settings_name_their_flag(values, message):
    with pytest.raises(UserError, match=message):
        ServeSettings(**values)


def test_flag_names_the_option_and_its_environment_variable():
    assert flag("max_wait_ms") == "--max-wait-ms / DISTILKIT_MAX_WAIT_MS"


def test_model_specs_take_an_optional_name_and_task():
    spec = parse_model_spec("qa:question-answering=some/dir")
    assert (spec.name, spec.task, spec.ref) == ("qa", "question-answering", "some/dir")
    ref = "models/distilbert-base-cased/"
    bare = parse_model_spec(ref)
    assert (bare.name, bare.task, bare.ref) == ("distilbert-base-cased", None, ref)
