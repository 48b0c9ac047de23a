"""The floor of one Python gRPC hop: a grpc.aio proxy with no logic at all.

``python bench/bare_proxy.py --port P --upstream HOST:PORT`` forwards every KServe
``ModelStreamInfer`` stream to the upstream Triton as raw bytes: no authentication, no parsing, no
routing, no capture, the same uvloop event loop as the gateway. Whatever the gateway adds beyond
what this adds is the gateway's own work (bench/gateway_overhead.py measures both side by side).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import grpc
import uvloop

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


def _identity(data: bytes) -> bytes:
    return data


class BareProxy(grpc.GenericRpcHandler):  # type: ignore[misc]  # untyped base
    """Forwards ModelStreamInfer streams byte for byte over one shared upstream channel."""

    def __init__(self, upstream: str) -> None:
        self.channel = grpc.aio.insecure_channel(upstream)
        self.call = self.channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != METHOD:
            return None
        return grpc.stream_stream_rpc_method_handler(
            self.forward, request_deserializer=_identity, response_serializer=_identity
        )

    async def forward(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for response in self.call(requests):
            yield response


async def serve(port: int, upstream: str) -> None:
    server = grpc.aio.server(handlers=[BareProxy(upstream)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"bare proxy on 127.0.0.1:{port} -> {upstream}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(serve(args.port, args.upstream))
