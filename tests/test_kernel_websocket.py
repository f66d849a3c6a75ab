"""Kernel messages reach the browser without Nagle's delay (jupyterlab_miniflow.kernel_websocket)."""

import json
import socket

import pytest
from jupyter_core.paths import jupyter_config_path
from jupyter_server.extension.config import ExtensionConfigManager
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

pytest_plugins = ["pytest_jupyter.jupyter_server"]

GATEWAY_CONNECTION = "jupyter_server.gateway.connections.GatewayWebSocketConnection"


def test_installing_the_project_enables_the_extension():
    extensions = ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions()
    assert extensions.get("jupyterlab_miniflow.kernel_websocket") is True


async def kernel_socket_nodelay(jp_fetch, jp_ws_fetch):
    """TCP_NODELAY of the server's end of a new kernel websocket."""
    reply = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(reply.body)["id"]
    client = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
    try:
        [connection] = [c for c in ZMQChannelsWebsocketConnection._open_sockets if c.kernel_id == kernel_id]
        server_end = connection.websocket_handler.ws_connection.stream.socket
        return server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.close()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


class TestWithTheExtension:
    @pytest.fixture
    def jp_server_config(self):
        return {"ServerApp": {"jpserver_extensions": {"jupyterlab_miniflow.kernel_websocket": True}}}

    async def test_kernel_websocket_has_nodelay(self, jp_fetch, jp_ws_fetch):
        assert await kernel_socket_nodelay(jp_fetch, jp_ws_fetch)


class TestStockServer:
    """What the extension changes: jupyter_server alone leaves Nagle's algorithm on."""

    @pytest.fixture
    def jp_server_config(self):
        return {"ServerApp": {"jpserver_extensions": {"jupyterlab_miniflow.kernel_websocket": False}}}

    async def test_kernel_websocket_has_no_nodelay(self, jp_fetch, jp_ws_fetch):
        assert not await kernel_socket_nodelay(jp_fetch, jp_ws_fetch)


class TestKernelGateway:
    """A server whose kernels live behind a gateway keeps the gateway's own websocket connection."""

    @pytest.fixture
    def jp_server_config(self):
        return {
            "ServerApp": {
                "jpserver_extensions": {"jupyterlab_miniflow.kernel_websocket": True},
                "kernel_websocket_connection_class": GATEWAY_CONNECTION,
            }
        }

    def test_the_gateway_connection_is_kept(self, jp_serverapp):
        connection_class = jp_serverapp.web_app.settings["kernel_websocket_connection_class"]
        assert f"{connection_class.__module__}.{connection_class.__name__}" == GATEWAY_CONNECTION
