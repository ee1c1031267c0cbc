"""Registry references: N@V, N:alias, N (= latest); paths and org/model hub ids are not references."""

from __future__ import annotations

import pytest

from distilkit.registry.refs import RegistryRef, check_token, parse_ref, require_ref


def test_version_alias_and_bare_name_parse():
    assert parse_ref("mymodel@3") == RegistryRef("mymodel", version="3")
    assert parse_ref("my-model.v2:prod") == RegistryRef("my-model.v2", alias="prod")
    assert parse_ref("mymodel") == RegistryRef("mymodel", alias="latest", explicit=False)
    assert str(parse_ref("m@1.0")) == "m@1.0" and str(parse_ref("m")) == "m:latest"


@pytest.mark.parametrize("text",
                         ["./model", "/abs/dir", "org/model", "a@", "a@1@2", "a:b:c", "@1", "", "a b"])
def test_paths_hub_ids_and_malformed_text_are_not_references(text):
    assert parse_ref(text) is None


def test_commands_that_need_one_version_refuse_aliases():
    assert require_ref("m@2", versioned=True).version == "2"
    with pytest.raises(ValueError, match="expected NAME@VERSION"):
        require_ref("m:prod", versioned=True)
    with pytest.raises(ValueError, match="not a registry reference"):
        require_ref("org/model")


def test_invalid_names_are_refused_naming_the_flag():
    with pytest.raises(ValueError, match="--name 'a/b' is invalid"):
        check_token("a/b", "--name")
