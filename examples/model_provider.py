"""Which model the examples talk to: scripted and offline by default, a real provider when configured.

``--provider`` (or ``$MODEL_PROVIDER``) picks one of:

* ``scripted`` - :class:`scripted_model.ScriptedModel`, deterministic answers, no network. It is
  chosen when nothing else is configured, and the examples say so in their output.
* ``bedrock`` - Amazon Bedrock, Strands' default provider; uses your AWS credentials
  (``$BEDROCK_MODEL_ID`` optional).
* ``openai`` - needs ``$OPENAI_API_KEY`` and ``uv run --extra openai ...`` (``$OPENAI_MODEL_ID``
  optional, default ``gpt-4o-mini``).
* ``ollama`` - a local Ollama server at ``$OLLAMA_HOST`` (default ``http://localhost:11434``),
  with ``uv run --extra ollama ...`` (``$OLLAMA_MODEL_ID`` optional, default ``llama3.1``).

Provider names are case-insensitive (``--provider Bedrock``, ``MODEL_PROVIDER=OpenAI``). Without
``--provider``, setting ``$OPENAI_API_KEY`` or ``$OLLAMA_HOST`` is enough to choose that
provider. Bedrock is only used when asked for, since AWS credentials are often present for other reasons.
"""

import argparse
import os
from collections.abc import Iterable

from strands.models.model import Model

from failures import ExampleError
from scripted_model import Responder, ScriptedModel, Turn, echo_responder

PROVIDERS = ("scripted", "bedrock", "openai", "ollama")


def configured_provider() -> str:
    """The provider the environment asks for, in lower case."""
    if provider := os.environ.get("MODEL_PROVIDER"):
        return provider.strip().lower()
    if os.environ.get("OPENAI_API_KEY"):
        return "openai"
    if os.environ.get("OLLAMA_HOST"):
        return "ollama"
    return "scripted"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--provider`` (default from the environment, see this module's docstring)."""
    default = configured_provider()
    if default not in PROVIDERS:
        raise ExampleError(f"MODEL_PROVIDER={default!r} is not a provider: choose one of {', '.join(PROVIDERS)}")
    parser.add_argument(
        "--provider",
        type=str.lower,
        choices=PROVIDERS,
        default=default,
        help="model provider (default: $MODEL_PROVIDER, else openai if $OPENAI_API_KEY, "
        "ollama if $OLLAMA_HOST, else scripted: offline, deterministic answers)",
    )


def build_model(
    provider: str, script: Iterable[Turn] = (), fallback: Responder = echo_responder, word_delay_ms: float = 0
) -> Model:
    """The model for ``provider``; ``script`` and ``fallback`` only drive the scripted one.

    Prints which model is used, so the output never passes scripted answers off as an LLM's.
    """
    if provider == "scripted":
        print("Model: ScriptedModel - scripted offline answers, not an LLM (see --provider);")
        print("       its token counts and its 100 ms model latency are synthetic, computed from the request")
        return ScriptedModel(script, fallback=fallback, word_delay_ms=word_delay_ms, record_calls=False)
    try:
        return _provider_model(provider)
    except ImportError as error:
        raise ExampleError(
            f"the {provider!r} provider needs its package ({error.name}): run with `uv run --extra {provider} ...`, "
            "or pass --provider scripted"
        ) from error


def _provider_model(provider: str) -> Model:
    """A real provider's model (imports its package, which may be an optional extra)."""
    if provider == "bedrock":
        from strands.models.bedrock import BedrockModel

        model_id = os.environ.get("BEDROCK_MODEL_ID")
        bedrock = BedrockModel(model_id=model_id) if model_id else BedrockModel()
        print(f"Model: Amazon Bedrock {bedrock.config['model_id']}")
        return bedrock
    if provider == "openai":
        from strands.models.openai import OpenAIModel

        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ExampleError("the openai provider needs an API key: set OPENAI_API_KEY, or pass --provider scripted")
        model_id = os.environ.get("OPENAI_MODEL_ID", "gpt-4o-mini")
        print(f"Model: OpenAI {model_id}")
        return OpenAIModel(client_args={"api_key": api_key}, model_id=model_id)
    if provider == "ollama":
        from strands.models.ollama import OllamaModel

        host = os.environ.get("OLLAMA_HOST", "http://localhost:11434")
        model_id = os.environ.get("OLLAMA_MODEL_ID", "llama3.1")
        print(f"Model: Ollama {model_id} at {host}")
        return OllamaModel(host, model_id=model_id)
    raise ValueError(f"unknown model provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
