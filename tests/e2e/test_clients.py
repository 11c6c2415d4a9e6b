"""The example clients (clients/{python,go,java}) as a user runs them, against the running suite.

Each client streams a chat completion; what it prints must be what the suite answers to the same
request made unary with the Python stubs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODEL = "tokenway-tiny"
# non-ASCII on purpose: arguments in and text out must survive every client as UTF-8
PROMPT = "¿Qué es un modelo de lenguaje? 日本語で"
MAX_TOKENS = 16
FINAL = re.compile(r"\n\[finish_reason=(\w*) usage=prompt:(\d+) completion:(\d+) total:(\d+)\]\n\Z")
CLIENTS = {
    "python": [sys.executable, str(ROOT / "clients/python/stream_chat.py")],
    "go": [str(ROOT / ".tokenway/bin/tokenway-chat-go")],
    "java": ["java", "-jar", str(ROOT / "clients/java/target/tokenway-chat-java.jar")],
}


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


@pytest.fixture(scope="session")
def built_clients():
    build = subprocess.run([str(ROOT / "tools/build_clients.sh")], cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, f"tools/build_clients.sh failed:\n{build.stdout}\n{build.stderr}"
    return CLIENTS


@pytest.fixture(params=sorted(CLIENTS))
def client(request, built_clients, suite):
    """Runs one client against the suite's orchestrator; returns (exit code, stdout, stderr)."""
    env = dict(suite.env, LANG="C.UTF-8", LC_ALL="C.UTF-8",  # the JVM decodes argv with the locale's charset
               TOKENWAY_API_KEY=suite.api_key)

    def run(*args: str, timeout: float = 120) -> tuple[int, str, str]:
        cmd = [*built_clients[request.param], "--address", f"127.0.0.1:{suite.orchestrator}", *args]
        p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")

    run.name = request.param
    run.popen = lambda *args: subprocess.Popen(
        [*built_clients[request.param], "--address", f"127.0.0.1:{suite.orchestrator}", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return run


@pytest.fixture(scope="session")
def unary_answer(chat):
    return chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(
        model=MODEL, messages=[chat_pb2.ChatRequestMessage(role="user", content=text_value(PROMPT))], max_tokens=MAX_TOKENS,
        temperature=0), timeout=60)


def test_client_prints_the_unary_text_finish_reason_and_usage(client, unary_answer, suite):
    code, out, err = client("--model", MODEL, "--prompt", PROMPT, "--max-tokens", str(MAX_TOKENS),
                            "--temperature", "0", "--seed", "7", "--timeout", "60", "--api-key", suite.api_key)
    assert code == 0, err
    final = FINAL.search(out)
    assert final, f"no final line in {out!r}"
    text, finish_reason = out[:final.start()], final.group(1)
    usage = tuple(int(g) for g in final.groups()[1:])
    (choice,) = unary_answer.choices
    assert text == choice.message.content
    assert finish_reason == choice.finish_reason
    u = unary_answer.usage
    assert usage == (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    assert usage[1] == MAX_TOKENS if finish_reason == "length" else finish_reason == "stop"


def test_client_shows_text_before_the_stream_ends(client):
    """The text arrives chunk by chunk, not all at once when the stream is over."""
    proc = client.popen("--prompt", PROMPT, "--max-tokens", "300", "--temperature", "0", "--timeout", "120")
    try:
        first = b""
        while not first.strip():
            data = os.read(proc.stdout.fileno(), 4096)
            assert data, f"{client.name} closed stdout before any text: {proc.stderr.read()!r}"
            first += data
        assert b"[finish_reason=" not in first
        assert proc.poll() is None, f"{client.name} printed nothing until it had finished"
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert FINAL.search((first + rest).decode("utf-8"))


def test_unknown_model_exits_non_zero_with_not_found(client):
    code, out, err = client("--model", "no-such-model", "--prompt", PROMPT, "--max-tokens", "4")
    assert code != 0
    assert "NOT_FOUND" in err and "no-such-model" in err
    assert "[finish_reason=" not in out


def test_deadline_ends_a_long_stream_with_deadline_exceeded(client):
    code, out, err = client("--prompt", PROMPT, "--max-tokens", "1500", "--temperature", "0", "--timeout", "0.5")
    assert code != 0
    assert "DEADLINE_EXCEEDED" in err
    assert "[finish_reason=" not in out
