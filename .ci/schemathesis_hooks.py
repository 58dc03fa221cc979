"""schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Hypothesis draws few distinct short strings, so the fuzzer's purchases (and checkout
sessions) kept reusing
`Idempotency-Key`s with other bodies, and most of them were answered 422
`idempotency_key_reused` without reaching the purchase itself. A valid key of a
generated purchase or checkout gets a UUID drawn by hypothesis appended, so that purchases are
mostly new ones (replays are still exercised: hypothesis repeats a whole case when it
shrinks or replays one). Invalid keys are left as generated.
"""

import re

import schemathesis
from hypothesis import strategies as st

# The document's pattern for the header (HTTP drops the spaces around a value).
VALID_KEY = re.compile(r"^[\x21-\x7E](?:[\x20-\x7E]{0,253}[\x21-\x7E])?$")
# Room for "." and a UUID within the 255 characters a key may have.
MAX_PREFIX = 255 - 37


@schemathesis.hook
def flatmap_headers(context, headers):
    operation = context.operation
    key = headers.get("Idempotency-Key") if isinstance(headers, dict) else None
    if (
        operation is None
        or operation.path not in ("/api/subscriptions/purchase", "/api/checkout_sessions")
        or not isinstance(key, str)
        or not VALID_KEY.match(key)
        or len(key) > MAX_PREFIX
    ):
        return st.just(headers)
    return st.uuids().map(lambda u: {**headers, "Idempotency-Key": f"{key}.{u}"})
