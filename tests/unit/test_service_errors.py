"""utils.service_errors: the one-line server error that the model builder (utils.ollama_client) and the model tester
(utils.served_model_client) share, so that neither has to import the other."""

from __future__ import annotations

from utils import ollama_client, served_model_client
from utils.service_errors import ServerError, error_line


def test_error_line_is_the_first_line_or_the_type_name():
    assert error_line(ValueError("first\nsecond\nthird")) == "first"
    assert error_line(ValueError("  padded  \n")) == "padded"
    assert error_line(TimeoutError()) == "TimeoutError"  # an empty message still says something


def test_one_class_on_both_sides():
    """What the Ollama client raises is what a model test catches (`except ServerError` in tools.model_test)."""
    assert served_model_client.ServerError is ServerError is ollama_client.ServerError
    assert served_model_client.error_line is error_line
    assert issubclass(ServerError, RuntimeError)
    err = ServerError("no reply from http://127.0.0.1:1/v1 within 1 s")
    assert err.partial is None and str(err) == "no reply from http://127.0.0.1:1/v1 within 1 s"
