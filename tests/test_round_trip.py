"""What was stored comes back equal: messages, agent state, metadata and multi-agent state, on both layouts.

Nothing is decoded on the way back, so a value shaped like Strands' base64 wrapper for bytes
(``{"__bytes_encoded__": True, "data": ...}``) stays a dict, and real bytes stay bytes.
"""

from collections.abc import Callable
from typing import Any

from strands import Agent, tool

from mongodb_session_manager import MongoDBSessionManager

from multi_agent_stand_in import FixedState
from scripted_model import ScriptedModel, ToolCall

NewManager = Callable[..., MongoDBSessionManager]

LOOKS_LIKE_BYTES = {"__bytes_encoded__": True, "data": "aGk="}
JSON_LIKE: dict[str, Any] = {
    "wrapper_shape": LOOKS_LIKE_BYTES,
    "nested": {"list": [1, 2.5, "three", None, True, False, [], {}], "deep": {"deeper": {"deepest": [[[]]]}}},
    "unicode": "naïve café \U0001f600 \u4e2d\u6587",
    "largest": 2**63 - 1,
    "smallest": -(2**63),
    "float": 1e-300,
    "empty": "",
    "wrappers": [LOOKS_LIKE_BYTES, {"__bytes_encoded__": False, "data": 1}],
}


def test_agent_state_shaped_like_a_bytes_wrapper_resumes_again_and_again(new_manager: NewManager) -> None:
    agent = Agent(model=ScriptedModel(["ok"]), session_manager=new_manager("s1"), callback_handler=None)
    agent.state.set("values", JSON_LIKE)
    agent("store it")

    for _ in range(2):
        resumed = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
        assert resumed.state.get("values") == JSON_LIKE


def test_tool_input_shaped_like_a_bytes_wrapper_comes_back_as_it_was(new_manager: NewManager) -> None:
    received: list[Any] = []

    @tool
    def keep(payload: dict[str, Any]) -> str:
        """Keep the payload."""
        received.append(payload)
        return "kept"

    model = ScriptedModel([ToolCall("keep", {"payload": JSON_LIKE}), "done"])
    Agent(model=model, tools=[keep], session_manager=new_manager("s1"), callback_handler=None)("keep this")
    assert received == [JSON_LIKE]

    resumed = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    [tool_use] = [
        block["toolUse"] for message in resumed.messages for block in message["content"] if "toolUse" in block
    ]
    assert tool_use["input"] == {"payload": JSON_LIKE}


def test_bytes_in_a_message_come_back_as_bytes(new_manager: NewManager) -> None:
    image = bytes(range(256))
    manager = new_manager("s1")
    agent = Agent(model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    image_message = {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": image}}}]}
    manager.append_message(image_message, agent)  # type: ignore[arg-type]

    resumed = Agent(model=ScriptedModel([]), session_manager=new_manager("s1"), callback_handler=None)
    assert resumed.messages[0]["content"][0]["image"]["source"]["bytes"] == image  # type: ignore[typeddict-item]


def test_metadata_and_multi_agent_state_come_back_equal(new_manager: NewManager) -> None:
    manager = new_manager("s1")
    manager.repository.update_metadata("s1", JSON_LIKE)
    manager.initialize_multi_agent(FixedState("g1", JSON_LIKE))  # type: ignore[arg-type]

    assert manager.repository.get_metadata("s1") == JSON_LIKE
    assert new_manager("s1").repository.read_multi_agent("s1", "g1") == JSON_LIKE
