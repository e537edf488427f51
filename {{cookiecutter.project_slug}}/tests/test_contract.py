"""Schema-driven contract test: Schemathesis generates requests from the OpenAPI schema, valid
and invalid ones (a bounded number per operation, both protocols), against a real server, and no
answer may be a 5xx or break the documented responses."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from {{ cookiecutter.package_name }}.model import MODEL

pytestmark = pytest.mark.slow  # against a real server

EXAMPLES = 30  # per operation and mode: enough to hit every documented error, fast on a CPU
# /predict's bodies hold every value of a row: for large rows (images) fewer examples, each
# with a 224x224 image about as costly to generate as 30 rows of a small model.
ROW_VALUES = sum(spec.row_elements() for spec in MODEL.inputs)
PREDICT_EXAMPLES = max(5, min(EXAMPLES, EXAMPLES * 4096 // ROW_VALUES))


MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
# What JSON Schema cannot state (/predict's description says it): a generated request that
# breaks it is rightly refused with 422 and this message.
UNSTATED_RULES = (
    "every input must have the same number of rows",
    "is ragged inside",
    "past its max_bytes",  # a BYTES string within max_bytes characters, but not UTF-8 bytes
)


def unstated_rule_broken(response) -> bool:
    return response.status_code == 422 and any(rule in response.text for rule in UNSTATED_RULES)


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
def test_api_contract(live_url, mode):
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    # A body past MAX_BODY_BYTES is refused (413) before it is read, whatever else is wrong in it.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/predict", "/livez", "/readyz", "/v2/models/{name}/infer", "/v2/models/{name}",
    }  # fmt: skip
    for operation in operations:
        if mode is schemathesis.GenerationMode.NEGATIVE and not operation.body:
            continue  # no body to get wrong (any text is a valid path segment)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=PREDICT_EXAMPLES if operation.path == "/predict" else EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case):
            response = case.call()
            if not unstated_rule_broken(response):
                case.validate_response(response)

        conforms()
