"""A Jupyter server extension: kernel messages reach the browser without Nagle's delay.

jupyter_server leaves Nagle's algorithm on for the websocket between the
browser and the kernel. A widget update is a burst of small messages (the
kernel's busy status, the slider's echo, the new picture, idle): with Nagle
on, the server holds every message after the first until the browser has
acknowledged the first, and the browser's TCP stack may delay that
acknowledgement by 40 ms. About every other move of a gradient-flow slider
then took 55 ms instead of 24 (benchmarks/widget_latency.py).

Installing jupyterlab_miniflow enables the extension for every JupyterLab and
Notebook started from its environment, through
etc/jupyter/jupyter_server_config.d/jupyterlab_miniflow.json.
"""

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayWebsocketConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, with TCP_NODELAY set on the socket."""

    def connect(self):
        self.websocket_handler.set_nodelay(True)
        return super().connect()


def _jupyter_server_extension_points():
    return [{"module": "jupyterlab_miniflow.kernel_websocket"}]


def _load_jupyter_server_extension(serverapp):
    # Only jupyter_server's own connection is replaced: a server configured
    # with another one (a kernel gateway's, say) keeps it.
    if serverapp.kernel_websocket_connection_class is not ZMQChannelsWebsocketConnection:
        serverapp.log.info(
            "jupyterlab_miniflow.kernel_websocket: kernel websockets keep %s",
            serverapp.kernel_websocket_connection_class.__name__,
        )
        return
    serverapp.kernel_websocket_connection_class = NoDelayWebsocketConnection
    serverapp.web_app.settings["kernel_websocket_connection_class"] = NoDelayWebsocketConnection
