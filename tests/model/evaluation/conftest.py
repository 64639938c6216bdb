"""The tiny trained model of the inference tests (one per session)."""

from tests.model.inference.conftest import trained  # noqa: F401
