"""Native TLS and mutual TLS on both ports, with tritonclient, ovmsclient, requests and grpc.

The certificates are made here (``_certs.py``): a CA signs the server's certificate for
127.0.0.1 and a client certificate; another CA signs a "stranger" client certificate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import ovmsclient
import pytest
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from _certs import make_certs
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from _models import add_onnx, save_onnx
from _server import HOST, START_TIMEOUT, ServerProcess, run_to_exit

A = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def model_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("add")
    save_onnx(add_onnx(), base)
    return ["--model_name", "add", "--model_path", str(base)]


def _secure_ready(server: ServerProcess, certs: Path, client: bool) -> bool:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "client.key").read_bytes() if client else None,
        certificate_chain=(certs / "client.pem").read_bytes() if client else None,
    )
    with grpc.secure_channel(server.grpc_target, credentials) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            return bool(stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=2).ready)
        except grpc.RpcError:
            return False


def _start_tls(args: list[str], log_dir: Path, certs: Path, mutual: bool) -> ServerProcess:
    server = ServerProcess(args, log_dir=log_dir, rest=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.is_running():
            raise AssertionError(f"ovserve exited\n{server.log_text()}")
        if _secure_ready(server, certs, client=mutual):
            return server
        time.sleep(0.2)
    server.kill()
    raise AssertionError(f"not ready\n{server.log_text()}")


@pytest.fixture(scope="module")
def tls_server(
    model_args: list[str], certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    flags = ["--tls_cert", str(certs / "server.pem"), "--tls_key", str(certs / "server.key")]
    server = _start_tls([*model_args, *flags], tmp_path_factory.mktemp("logs"), certs, False)
    yield server
    assert server.stop() == 0, server.log_text()


@pytest.fixture(scope="module")
def mtls_server(
    model_args: list[str], certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    flags = [
        "--tls_cert",
        str(certs / "server.pem"),
        "--tls_key",
        str(certs / "server.key"),
        "--tls_client_ca",
        str(certs / "ca.pem"),
    ]
    server = _start_tls([*model_args, *flags], tmp_path_factory.mktemp("logs"), certs, True)
    yield server
    assert server.stop() == 0, server.log_text()


def _triton_grpc_infer(client: triton_grpc.InferenceServerClient) -> np.ndarray:
    inputs = [triton_grpc.InferInput(name, [2, 4], "FP32") for name in ("a", "b")]
    for tensor in inputs:
        tensor.set_data_from_numpy(A)
    return np.asarray(client.infer("add", inputs).as_numpy("sum"))


def _triton_http_infer(client: triton_http.InferenceServerClient) -> np.ndarray:
    inputs = [triton_http.InferInput(name, [2, 4], "FP32") for name in ("a", "b")]
    for tensor in inputs:
        tensor.set_data_from_numpy(A)
    return np.asarray(client.infer("add", inputs).as_numpy("sum"))


def test_tls_serves_both_ports_to_clients_that_trust_the_ca(
    tls_server: ServerProcess, certs: Path
) -> None:
    ca = str(certs / "ca.pem")
    grpc_client = triton_grpc.InferenceServerClient(
        tls_server.grpc_target, ssl=True, root_certificates=ca
    )
    np.testing.assert_array_equal(_triton_grpc_infer(grpc_client), A + A)
    http_client = triton_http.InferenceServerClient(
        f"{HOST}:{tls_server.rest_port}", ssl=True, ssl_options={"ca_certs": ca}
    )
    np.testing.assert_array_equal(_triton_http_infer(http_client), A + A)
    http_client.close()
    reply = requests.get(
        f"https://{HOST}:{tls_server.rest_port}/v2/models/add", verify=ca, timeout=5
    )
    assert reply.json()["name"] == "add"
    # OVMS's demo clients: --tls --server_cert <ca> become ovmsclient's tls_config (gRPC:
    # ovmsclient's HTTP client always speaks http://, whatever its tls_config says).
    client = ovmsclient.make_grpc_client(
        tls_server.grpc_target, tls_config={"server_cert_path": ca}
    )
    assert client.get_model_status("add")[1]["state"] == "AVAILABLE"


def test_large_binary_bodies_over_tls(tls_server: ServerProcess, certs: Path) -> None:
    """A 1.6 MB body is decrypted straight into its buffer, over several TLS records."""
    client = triton_http.InferenceServerClient(
        f"{HOST}:{tls_server.rest_port}", ssl=True, ssl_options={"ca_certs": str(certs / "ca.pem")}
    )
    big = np.random.default_rng(3).standard_normal((50_000, 4)).astype(np.float32)
    inputs = [triton_http.InferInput(name, list(big.shape), "FP32") for name in ("a", "b")]
    for tensor in inputs:
        tensor.set_data_from_numpy(big, binary_data=True)
    output = triton_http.InferRequestedOutput("sum", binary_data=True)
    for _ in range(2):
        reply = client.infer("add", inputs, outputs=[output])
        np.testing.assert_array_equal(reply.as_numpy("sum"), big + big)
    client.close()


def test_plaintext_clients_are_refused_on_tls_ports(tls_server: ServerProcess) -> None:
    with grpc.insecure_channel(tls_server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=3)
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{tls_server.rest_url}/v2/health/ready", timeout=3)


def test_mutual_tls_wants_a_client_certificate_from_the_ca(
    mtls_server: ServerProcess, certs: Path
) -> None:
    ca, cert, key = (str(certs / name) for name in ("ca.pem", "client.pem", "client.key"))
    grpc_client = triton_grpc.InferenceServerClient(
        mtls_server.grpc_target,
        ssl=True,
        root_certificates=ca,
        private_key=key,
        certificate_chain=cert,
    )
    np.testing.assert_array_equal(_triton_grpc_infer(grpc_client), A + A)
    http_client = triton_http.InferenceServerClient(
        f"{HOST}:{mtls_server.rest_port}",
        ssl=True,
        ssl_options={"ca_certs": ca, "certfile": cert, "keyfile": key},
    )
    np.testing.assert_array_equal(_triton_http_infer(http_client), A + A)
    http_client.close()
    tls_config = {"server_cert_path": ca, "client_cert_path": cert, "client_key_path": key}
    client = ovmsclient.make_grpc_client(mtls_server.grpc_target, tls_config=tls_config)
    assert client.get_model_status("add")[1]["state"] == "AVAILABLE"

    url = f"https://{HOST}:{mtls_server.rest_port}/v2/health/ready"
    assert requests.get(url, verify=ca, cert=(cert, key), timeout=5).status_code == 200
    stranger = (str(certs / "stranger.pem"), str(certs / "stranger.key"))
    for client_cert in (None, stranger):
        # TLS 1.3 refuses the certificate after the client's handshake: an SSL error or an
        # abrupt close, depending on timing.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=ca, cert=client_cert, timeout=5)
        no_cert = triton_grpc.InferenceServerClient(
            mtls_server.grpc_target,
            ssl=True,
            root_certificates=ca,
            private_key=client_cert[1] if client_cert else None,
            certificate_chain=client_cert[0] if client_cert else None,
        )
        with pytest.raises(InferenceServerException):
            no_cert.is_server_ready(client_timeout=3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls_client_ca", "{ca}"], "tls_client_ca requires tls_cert and tls_key"),
        (["--tls_cert", "{server_pem}"], "tls_cert and tls_key must be given together"),
        (
            ["--tls_cert", "{server_pem}", "--tls_key", "{client_key}"],
            "does not match the certificate",
        ),
        (["--tls_cert", "{server_pem}", "--tls_key", "{missing}"], "Cannot read tls_key"),
        (
            [
                "--tls_cert",
                "{server_pem}",
                "--tls_key",
                "{server_key}",
                "--tls_client_ca",
                "{model}",
            ],
            "Cannot read tls_client_ca",
        ),
    ],
)
def test_bad_tls_flags_stop_the_server_at_start(
    flags: list[str], message: str, certs: Path, model_args: list[str], tmp_path: Path
) -> None:
    names = {
        "ca": certs / "ca.pem",
        "server_pem": certs / "server.pem",
        "server_key": certs / "server.key",
        "client_key": certs / "client.key",
        "missing": certs / "missing.key",
        "model": Path(model_args[-1]),
    }
    args = [*model_args, *(flag.format(**{k: str(v) for k, v in names.items()}) for flag in flags)]
    server = run_to_exit(args, log_dir=tmp_path, timeout=60)
    assert server.returncode != 0
    assert message in server.log_text()
