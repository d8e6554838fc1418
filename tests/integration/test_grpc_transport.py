"""The gRPC transport against real clients: grpcio channels, tritonclient and a raw HTTP/2
client (the ``h2`` package on a socket) for what a well-behaved client never sends.

The native stack (the default) is tested throughout: compressed requests, 8 MiB requests and
replies, many calls at once on one channel, a long ModelStreamInfer stream, deadlines that
expire while the model runs (enforced by the server itself, not only by the client), metadata,
a request over ``--max_request_size``, and hostile connections (garbage, a ping flood, a rapid
reset flood) that are closed while a good client on another connection keeps being answered.
One basic inference runs on both stacks (``--grpc_stack native`` and ``grpcio``).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import numpy as np
import pytest
import tritonclient.grpc as triton
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from _mm_helpers import model_entry, write_json_atomically
from _models import F32, add_mul_model, save_ir, scale_model, slow_model
from _server import HOST, ServerPool, ServerProcess

MIB = 1024 * 1024
MAX_REQUEST = 16 * MIB
BIG_CHANNEL = [
    ("grpc.max_receive_message_length", 64 * MIB),
    ("grpc.max_send_message_length", 64 * MIB),
]
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
RNG = np.random.default_rng(20261130)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config serving ``add_mul``, ``scale`` ([-1] FP32, times 2) and ``slow``."""
    folder = tmp_path_factory.mktemp("transport")
    save_ir(add_mul_model(), folder / "add_mul")
    save_ir(scale_model(shape=(-1,), factor=2.0), folder / "scale")
    save_ir(slow_model(size=512, depth=96), folder / "slow")
    config = folder / "config.json"
    write_json_atomically(
        config,
        {
            "model_config_list": [
                model_entry(name, folder / name, plugin_config=F32)
                for name in ("add_mul", "scale", "slow")
            ]
        },
    )
    return config


@pytest.fixture(scope="module")
def native(module_server_factory: ServerPool, models: Path) -> ServerProcess:
    """The default stack, with requests capped at 16 MiB."""
    args = ["--config_path", str(models), "--max_request_size", str(MAX_REQUEST)]
    return module_server_factory.start(args)


@pytest.fixture
def channel(native: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(native.grpc_target, options=BIG_CHANNEL) as opened:
        yield opened


def add_mul_request(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], rid: str = "") -> Any:
    request = service_pb2.ModelInferRequest(model_name="add_mul", id=rid)
    for name, array in (("a", a), ("b", b)):
        request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        request.raw_input_contents.append(array.tobytes())
    return request


def scale_request(x: np.ndarray[Any, Any]) -> Any:
    request = service_pb2.ModelInferRequest(model_name="scale")
    request.inputs.add(name="data", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


def outputs(reply: Any) -> dict[str, np.ndarray[Any, Any]]:
    return {
        out.name: np.frombuffer(raw, dtype=np.float32).reshape(list(out.shape))
        for out, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
    }


def check_add_mul(channel: grpc.Channel, rows: int = 2, **call: Any) -> None:
    """One add_mul inference on ``channel``, checked (``call``: timeout, metadata, ...)."""
    a = RNG.standard_normal((rows, 4)).astype(np.float32)
    b = RNG.standard_normal((rows, 4)).astype(np.float32)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    got = outputs(stub.ModelInfer(add_mul_request(a, b), timeout=call.pop("timeout", 30), **call))
    np.testing.assert_array_equal(got["sum"], a + b)
    np.testing.assert_array_equal(got["product"], a * b)


# -- both stacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["native", "grpcio"])
def test_a_basic_inference_on_each_stack(
    stack: str, native: ServerProcess, module_server_factory: ServerPool, models: Path
) -> None:
    server = native
    if stack == "grpcio":
        server = module_server_factory.start(
            ["--config_path", str(models), "--grpc_stack", "grpcio"]
        )
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_ready()
        a = RNG.standard_normal((3, 4)).astype(np.float32)
        b = RNG.standard_normal((3, 4)).astype(np.float32)
        tensors = [triton.InferInput("a", [3, 4], "FP32"), triton.InferInput("b", [3, 4], "FP32")]
        tensors[0].set_data_from_numpy(a)
        tensors[1].set_data_from_numpy(b)
        result = client.infer("add_mul", tensors)
        np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
        np.testing.assert_array_equal(result.as_numpy("product"), a * b)
        with pytest.raises(InferenceServerException, match="Model with requested name"):
            client.infer("missing", tensors)
    finally:
        client.close()


# -- the native stack with real clients -----------------------------------------------------


class CountingProxy:
    """A TCP relay to the server that counts the bytes clients send through it."""

    def __init__(self, port: int) -> None:
        self._target = (HOST, port)
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self.sent = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target)
                for source, sink, counted in ((client, upstream, True), (upstream, client, False)):
                    thread = threading.Thread(
                        target=self._relay, args=(source, sink, counted), daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)

    def _relay(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(1 << 16):
                if counted:
                    with self._lock:
                        self.sent += len(chunk)
                sink.sendall(chunk)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_a_compressed_channel_gets_the_same_answer(
    native: ServerProcess, channel: grpc.Channel, compression: grpc.Compression
) -> None:
    """The request really travels compressed (counted on the wire), and the answer is the
    uncompressed call's."""
    x = np.repeat(RNG.standard_normal(64).astype(np.float32), 4096)  # 1 MiB, compressible
    plain = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
        scale_request(x), timeout=30
    )
    proxy = CountingProxy(native.port)
    try:
        with grpc.insecure_channel(
            f"{HOST}:{proxy.port}", options=BIG_CHANNEL, compression=compression
        ) as compressed_channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(compressed_channel)
            compressed = stub.ModelInfer(scale_request(x), timeout=30)
            check_add_mul(compressed_channel)
    finally:
        proxy.close()
    assert proxy.sent < x.nbytes // 10, f"{proxy.sent} bytes sent for a {x.nbytes}-byte input"
    assert compressed.raw_output_contents == plain.raw_output_contents
    np.testing.assert_array_equal(outputs(compressed)["out"], x * 2)


def test_tritonclient_gzip_requests(native: ServerProcess) -> None:
    client = triton.InferenceServerClient(native.grpc_target)
    try:
        x = np.zeros(100_000, dtype=np.float32) + 1.5
        tensor = triton.InferInput("data", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("scale", [tensor], compression_algorithm="gzip")
        np.testing.assert_array_equal(result.as_numpy("out"), x * 2)
    finally:
        client.close()


def test_an_8_mib_request_and_reply(native: ServerProcess) -> None:
    x = RNG.standard_normal(2 * MIB).astype(np.float32)  # 8 MiB in, 8 MiB out
    client = triton.InferenceServerClient(native.grpc_target)
    try:
        tensor = triton.InferInput("data", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("scale", [tensor], client_timeout=60)
        np.testing.assert_array_equal(result.as_numpy("out"), x * 2)
    finally:
        client.close()


def test_many_concurrent_calls_on_one_channel(channel: grpc.Channel) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    pairs = [
        (
            RNG.standard_normal((1 + i % 5, 4)).astype(np.float32),
            RNG.standard_normal((1 + i % 5, 4)).astype(np.float32),
        )
        for i in range(300)
    ]
    futures = [
        stub.ModelInfer.future(add_mul_request(a, b, f"r{i}"), timeout=60)
        for i, (a, b) in enumerate(pairs)
    ]
    for index, (future, (a, b)) in enumerate(zip(futures, pairs, strict=True)):
        reply = future.result()
        assert reply.id == f"r{index}"
        got = outputs(reply)
        np.testing.assert_array_equal(got["sum"], a + b)
        np.testing.assert_array_equal(got["product"], a * b)


def test_a_stream_of_many_infer_requests(native: ServerProcess) -> None:
    count = 300
    pairs = [
        (
            RNG.standard_normal((2, 4)).astype(np.float32),
            RNG.standard_normal((2, 4)).astype(np.float32),
        )
        for _ in range(count)
    ]
    replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = triton.InferenceServerClient(native.grpc_target)
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        for index, (a, b) in enumerate(pairs):
            tensors = [
                triton.InferInput("a", [2, 4], "FP32"),
                triton.InferInput("b", [2, 4], "FP32"),
            ]
            tensors[0].set_data_from_numpy(a)
            tensors[1].set_data_from_numpy(b)
            client.async_stream_infer("add_mul", tensors, request_id=f"s{index}")
        got = [replies.get(timeout=60) for _ in range(count)]
    finally:
        client.stop_stream()
        client.close()
    assert [error for _, error in got if error is not None] == []
    assert [result.get_response().id for result, _ in got] == [f"s{i}" for i in range(count)]
    for (result, _), (a, b) in zip(got, pairs, strict=True):
        np.testing.assert_array_equal(result.as_numpy("sum"), a + b)


def slow_request() -> Any:
    """About 0.6 s of inference here (two 512-row batches through 96 layers)."""
    x = RNG.standard_normal((1024, 512)).astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1024, 512])
    request.raw_input_contents.append(x.tobytes())
    return request


def test_a_deadline_that_expires_while_the_model_runs(
    native: ServerProcess, channel: grpc.Channel
) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(slow_request(), timeout=0.1)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    check_add_mul(channel)
    log = native.log_text()
    assert "Traceback" not in log
    assert "unexpected error" not in log


def test_the_server_itself_ends_a_call_past_its_grpc_timeout(native: ServerProcess) -> None:
    """A client that does not enforce its own deadline still gets DEADLINE_EXCEEDED (the
    ``grpc-timeout`` it sent), and the connection goes on serving."""
    with RawClient(native.port) as raw:
        started = time.monotonic()
        headers, _, trailers = raw.call(
            INFER_PATH, slow_request().SerializeToString(), [("grpc-timeout", "100m")]
        )
        elapsed = time.monotonic() - started
        status = trailers.get("grpc-status", headers.get("grpc-status"))
        assert status == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])
        assert elapsed < 5
        a = np.ones((1, 4), dtype=np.float32)
        _, data, trailers = raw.call(INFER_PATH, add_mul_request(a, a).SerializeToString())
        assert trailers["grpc-status"] == "0"
        reply = service_pb2.ModelInferResponse.FromString(data[5:])
        np.testing.assert_array_equal(outputs(reply)["sum"], a + a)


def test_metadata_is_accepted(native: ServerProcess, channel: grpc.Channel) -> None:
    metadata = [
        ("x-request-id", "abc-123"),
        ("authorization", "Bearer token"),
        ("x-trace-bin", b"\x00\x01\xff"),
    ]
    check_add_mul(channel, metadata=metadata)
    client = triton.InferenceServerClient(native.grpc_target)
    try:
        assert client.is_server_live(headers={"x-user": "tester"})
    finally:
        client.close()


def test_a_message_over_max_request_size_is_resource_exhausted(
    native: ServerProcess, channel: grpc.Channel
) -> None:
    x = np.zeros(MAX_REQUEST // 4 + 1024, dtype=np.float32)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(scale_request(x), timeout=30)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than the configured limit" in str(caught.value.details())
        check_add_mul(channel)


# -- hostile connections --------------------------------------------------------------------


class RawClient:
    """An HTTP/2 client on a plain socket: the ``h2`` package makes the frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.h2.initiate_connection()
        self.flush()
        settings: dict[str, Any] = {}
        while "settings" not in settings:  # the server's windows, before sending any data
            self._read_once(settings)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def call(
        self, path: str, message: bytes, extra: list[tuple[str, str]] | None = None
    ) -> tuple[dict[str, str], bytes, dict[str, str]]:
        """One unary gRPC call: the reply's headers, DATA bytes and trailers."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", HOST),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                *(extra or []),
            ],
        )
        body = len(message).to_bytes(5, "big") + message
        headers: dict[str, str] = {}
        data = bytearray()
        trailers: dict[str, str] = {}
        state = {"headers": headers, "data": data, "trailers": trailers, "stream": stream_id}
        while body and "ended" not in state:
            room = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if room:
                self.h2.send_data(stream_id, body[:room], end_stream=room >= len(body))
                body = body[room:]
                self.flush()
            else:
                self._read_once(state)
        while "ended" not in state:
            self._read_once(state)
        return headers, bytes(data), trailers

    def _read_once(self, state: dict[str, Any]) -> None:
        chunk = self.sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        for event in self.h2.receive_data(chunk):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                state["settings"] = True
            if getattr(event, "stream_id", None) != state.get("stream"):
                continue
            if isinstance(event, h2.events.ResponseReceived):
                state["headers"].update(dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                state["data"] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                state["trailers"].update(dict(event.headers))
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                state["ended"] = True
        self.flush()


def test_a_large_message_that_stops_half_way_does_not_hold_back_its_connection(
    native: ServerProcess,
) -> None:
    """While a large message arrives the server asks the kernel to wake it only once the
    message is in (SO_RCVLOWAT). A client that stops half way must still get its PING answered
    and a second call on the same connection served; the first call completes once the rest
    of its message comes."""
    x = RNG.standard_normal(256 * 1024).astype(np.float32)  # a 1 MiB tensor
    message = scale_request(x).SerializeToString()
    body = len(message).to_bytes(5, "big") + message
    with RawClient(native.port) as client:
        conn = client.h2
        big = conn.get_next_available_stream_id()
        conn.send_headers(
            big,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", INFER_PATH),
                (":authority", HOST),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        half = 128 * 1024
        for at in range(0, half, conn.max_outbound_frame_size):
            conn.send_data(big, body[at : min(half, at + conn.max_outbound_frame_size)])
        client.flush()
        time.sleep(0.3)  # the server has read the start and waits for the rest
        conn.ping(b"stalled?")
        client.flush()
        client.sock.settimeout(5)
        acked = False
        state: dict[str, Any] = {"stream": big, "headers": {}, "data": bytearray(), "trailers": {}}
        deadline = time.monotonic() + 5
        while not acked and time.monotonic() < deadline:
            chunk = client.sock.recv(1 << 16)
            assert chunk, "the server closed the connection"
            acked = any(
                isinstance(event, h2.events.PingAckReceived) for event in conn.receive_data(chunk)
            )
        assert acked, "the PING waited behind the unfinished message"

        a = RNG.standard_normal((1, 4)).astype(np.float32)
        b = RNG.standard_normal((1, 4)).astype(np.float32)
        _, data, trailers = client.call(INFER_PATH, add_mul_request(a, b).SerializeToString())
        assert trailers.get("grpc-status") == "0", trailers
        reply = service_pb2.ModelInferResponse.FromString(data[5:])
        np.testing.assert_array_equal(outputs(reply)["sum"], a + b)

        rest = body[half:]
        while rest:
            room = min(conn.local_flow_control_window(big), conn.max_outbound_frame_size)
            conn.send_data(big, rest[:room], end_stream=room >= len(rest))
            rest = rest[room:]
            client.flush()
        while "ended" not in state:
            client._read_once(state)
        assert state["trailers"].get("grpc-status") == "0", state["trailers"]
        reply = service_pb2.ModelInferResponse.FromString(bytes(state["data"][5:]))
        np.testing.assert_allclose(outputs(reply)["out"], 2 * x, rtol=1e-6)


def read_to_close(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    received = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    else:
        raise AssertionError("the server kept the connection open")
    return bytes(received)


def server_frames(data: bytes) -> list[Frame]:
    """The whole frames in ``data``."""
    found = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        if len(view) < 9 + length:
            break
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


@contextlib.contextmanager
def good_client_running(server: ServerProcess) -> Iterator[dict[str, int]]:
    """A client on its own connection calling add_mul in a loop; counts what happened."""
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def loop() -> None:
        with grpc.insecure_channel(server.grpc_target) as good:
            while not stop.is_set():
                try:
                    check_add_mul(good, timeout=10)
                    counts["ok"] += 1
                except (grpc.RpcError, AssertionError):
                    counts["failed"] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_hostile_connections_are_closed_and_a_good_client_is_still_served(
    native: ServerProcess,
) -> None:
    with good_client_running(native) as counts:
        # garbage instead of the preface
        with socket.create_connection((HOST, native.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            frames = server_frames(read_to_close(sock))
        assert isinstance(frames[0], SettingsFrame)
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert [g.error_code for g in goaways] == [PROTOCOL_ERROR]

        # a ping flood
        with RawClient(native.port) as raw:
            for index in range(300):
                raw.h2.ping(index.to_bytes(8, "big"))
            raw.flush()
            frames = server_frames(read_to_close(raw.sock))
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert [(g.error_code, g.additional_data) for g in goaways] == [
            (ENHANCE_YOUR_CALM, b"too_many_pings")
        ]

        # a rapid reset flood: calls opened and cancelled at once
        with RawClient(native.port) as raw:
            for _ in range(1000):
                stream_id = raw.h2.get_next_available_stream_id()
                raw.h2.send_headers(
                    stream_id,
                    [
                        (":method", "POST"),
                        (":scheme", "http"),
                        (":path", INFER_PATH),
                        (":authority", HOST),
                        ("content-type", "application/grpc"),
                    ],
                )
                raw.h2.reset_stream(stream_id, 8)
            with contextlib.suppress(OSError):
                raw.flush()
            frames = server_frames(read_to_close(raw.sock))
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert [g.error_code for g in goaways] == [ENHANCE_YOUR_CALM]

        deadline = time.monotonic() + 10
        while counts["ok"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert counts["failed"] == 0
    assert counts["ok"] >= 5
    with grpc.insecure_channel(native.grpc_target) as after:
        check_add_mul(after)
    assert "Traceback" not in native.log_text()


def test_large_requests_past_the_memory_quota_wait_in_line_and_all_answer(
    module_server_factory: ServerPool, models: Path
) -> None:
    """Eight 1 MiB requests at once against a 2.5 MiB quota: the ones that do not fit wait for
    memory (their windows held) and are answered once it is free, each with its own result."""
    server = module_server_factory.start(
        ["--config_path", str(models), "--rest_memory_quota", str(5 * MIB // 2)]
    )
    inputs = [RNG.standard_normal(256 * 1024).astype(np.float32) for _ in range(8)]
    with grpc.insecure_channel(server.grpc_target, options=BIG_CHANNEL) as opened:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(opened)
        pending = [stub.ModelInfer.future(scale_request(x), timeout=60) for x in inputs]
        replies = [call.result() for call in pending]
    for x, reply in zip(inputs, replies, strict=True):
        np.testing.assert_allclose(outputs(reply)["out"], 2 * x, rtol=1e-6)


def test_rest_bodies_and_grpc_messages_share_one_memory_quota(
    module_server_factory: ServerPool, models: Path
) -> None:
    """A REST body being received holds the whole quota: a large gRPC message waits for it
    (RESOURCE_EXHAUSTED once the wait passes the body timeout) and runs once it is freed."""
    server = module_server_factory.start(
        [
            "--config_path", str(models),
            "--rest_memory_quota", str(MIB),
            "--rest_body_timeout_seconds", "2",
        ],
        rest=True,
    )  # fmt: skip
    x = RNG.standard_normal(256 * 1024).astype(np.float32)  # a 1 MiB message: all of the quota
    assert server.rest_port is not None
    body = socket.create_connection((HOST, server.rest_port))
    head = (
        f"POST /v2/models/scale/infer HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 * MIB}\r\n\r\n{{"
    )
    stop_trickle = threading.Event()

    def trickle() -> None:  # keeps the body alive (never silent for the body timeout)
        while not stop_trickle.wait(0.3):
            body.sendall(b" ")

    trickler = threading.Thread(target=trickle)
    with body, grpc.insecure_channel(server.grpc_target, options=BIG_CHANNEL) as opened:
        body.sendall(head.encode())
        trickler.start()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(opened)
        try:
            refused: grpc.RpcError | None = None
            waited = 0.0
            for _ in range(3):  # a slow server may not have read the REST headers yet: retry
                time.sleep(0.3)
                started = time.monotonic()
                try:
                    stub.ModelInfer(scale_request(x), timeout=30)
                except grpc.RpcError as error:
                    refused, waited = error, time.monotonic() - started
                    break
        finally:
            stop_trickle.set()
            trickler.join()
        assert refused is not None, "a gRPC message was answered while a REST body held the quota"
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "memory quota" in (refused.details() or "")
        assert waited >= 1.5
        body.close()  # the REST request ends: its share comes back
        reply = stub.ModelInfer(scale_request(x), timeout=30)
    np.testing.assert_allclose(outputs(reply)["out"], 2 * x, rtol=1e-6)
    assert "Traceback" not in server.log_text()
