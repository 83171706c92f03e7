"""The README's first command works as written and shows what it claims."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_offline_and_restores_the_conversation(mongodb_uri: str, database_name: str) -> None:
    env = {**os.environ, "MONGODB_URI": mongodb_uri}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--database", database_name],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ScriptedModel" in out
    restored = out.split("restore the conversation:")[1]
    assert "<calls add({'a': 19, 'b': 23})>" in restored
    assert "You asked me to add 19 and 23." in restored
    assert "favourite_number = 42" in restored
    assert "'model_calls': 3" in out
    assert "'event_loop_metrics'" in out
