#!/usr/bin/env python3
"""Stream a chat completion from tokenway and print the text as it arrives.

The reference example client: the Go (clients/go) and Java (clients/java) clients do exactly the same.

    python clients/python/stream_chat.py --prompt "Tell me about gRPC." --max-tokens 32

Prints the text of choice 0 chunk by chunk, then one line
`[finish_reason=length usage=prompt:20 completion:12 total:32]`. On a gRPC error it prints
`error: NOT_FOUND: <message>` to stderr and exits with 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

import grpc
from google.protobuf import struct_pb2
from tokenway.v1 import chat_pb2, chat_pb2_grpc, common_pb2


def text_value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default="127.0.0.1:50051", help="orchestrator host:port (default %(default)s)")
    p.add_argument("--model", default="tokenway-tiny", help="model id (default %(default)s)")
    p.add_argument("--prompt", default="Tell me about the fast model server.", help="the user message")
    p.add_argument("--max-tokens", type=int, default=64, help="upper bound on generated tokens (default %(default)s)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature, 0 is greedy (default: model's)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: none)")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline of the whole call in seconds (default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("TOKENWAY_API_KEY", ""),
                   help="sent as `authorization: Bearer <key>` (default: $TOKENWAY_API_KEY)")
    return p.parse_args(argv)


def build_request(args: argparse.Namespace) -> chat_pb2.StreamChatCompletionRequest:
    req = chat_pb2.StreamChatCompletionRequest(
        model=args.model,
        messages=[chat_pb2.ChatRequestMessage(role="user", content=text_value(args.prompt))],
        max_tokens=args.max_tokens,
        stream_options=common_pb2.StreamOptions(include_usage=True),
    )
    # optional fields: leave unset for "model default"
    if args.temperature is not None:
        req.temperature = args.temperature
    if args.seed is not None:
        req.seed = args.seed
    return req


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(encoding="utf-8")  # the model's text is any Unicode, whatever the locale
    metadata = [("x-request-id", str(uuid.uuid4()))]
    if args.api_key:
        metadata.append(("authorization", f"Bearer {args.api_key}"))

    finish_reason, usage, printed = "", None, False
    try:
        with grpc.insecure_channel(args.address) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            for chunk in stub.StreamChatCompletion(build_request(args), timeout=args.timeout, metadata=metadata):
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        sys.stdout.write(choice.delta.content)
                        sys.stdout.flush()
                        printed = True
                    if choice.HasField("finish_reason"):
                        finish_reason = choice.finish_reason
                if chunk.HasField("usage"):
                    usage = chunk.usage
    except grpc.RpcError as e:
        if printed:
            print(flush=True)  # end the partial text's line
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

    u = usage or common_pb2.Usage()
    print(f"\n[finish_reason={finish_reason} usage=prompt:{u.prompt_tokens} "
          f"completion:{u.completion_tokens} total:{u.total_tokens}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
