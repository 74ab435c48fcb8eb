"""Schemathesis hooks for tests/test_api_schema.py, loaded through SCHEMATHESIS_HOOKS.

A page token is valid only when the server gave it, which no schema can say: the OpenAPI
file marks it ``format: page-token``, and here valid ones are drawn the way MLflow issues
them (the server refuses others with 400, and negative cases still try those).
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st
from mlflow.utils.search_utils import SearchUtils

schemathesis.openapi.format(
    "page-token",
    st.integers(min_value=1, max_value=5000).map(lambda offset: SearchUtils.create_page_token(offset).decode("ascii")),
)
