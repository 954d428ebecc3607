"""The one error type of a server that did not answer as it should, shared by the code that builds a model
(`utils.ollama_client`, creating it in Ollama) and the code that tests it (`utils.served_model_client`, the chat API), so
neither imports the other. Its message is one line: users read it instead of a traceback.
"""

from __future__ import annotations


class ServerError(RuntimeError):
    """The server could not answer as the chat API promises; the message is one line saying why."""

    # utils.served_model_client.run_model_test sets it when a run stops part way: the ModelTestReport of the questions answered so far
    partial = None


def error_line(err: Exception) -> str:
    """The first line of an error, for the one-line messages users see instead of a traceback."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


__all__ = ["ServerError", "error_line"]
