"""schemathesis over /openapi.json: every operation, generated valid and invalid requests, no 5xx,
and every response (status, content type, headers, body) as the document declares it.

schemathesis runs as its own command (``schemathesis run``) against the server on a thread of
this process: its pytest plugin's lazy schema loading does not support this pytest.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from inprocess import serving

from distilkit.inference.predictor import Predictor

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


@pytest.fixture(scope="module")
def url(tiny_model):
    predictors = {name: Predictor.from_ref(tiny_model(task), task, dtype="float32")
                  for name, task in (("mlm", "fill-mask"), ("qa", "question-answering"),
                                     ("sentiment", "text-classification"), ("ner", "token-classification"))}
    with serving(predictors, max_inputs=8, max_body_bytes=20_000, timeout_s=20) as base:
        yield base


def test_every_operation_answers_as_its_openapi_document_declares(url):
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", url + "/openapi.json", "--checks", CHECKS,
         "--mode", "all", "--phases", "examples,coverage,fuzzing", "--max-examples", "30", "--seed", "0",
         "--generation-database", "none", "--workers", "1", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
