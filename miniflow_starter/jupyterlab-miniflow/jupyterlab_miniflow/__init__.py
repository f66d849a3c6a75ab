"""The miniflow lab's JupyterLab extension: the Exercises panel, its REST endpoints, and hand-in.

The front end (src/, built into labextension/) shows the panel; this server extension answers it
under /miniflow/ (handlers.py). kernel_websocket.py is a second server extension, enabled beside it.
"""

from .handlers import setup_route_handlers

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyterlab-miniflow"}]


def _jupyter_server_extension_points():
    return [{"module": "jupyterlab_miniflow"}]


def _load_jupyter_server_extension(server_app):
    setup_route_handlers(server_app.web_app)
    server_app.log.info("jupyterlab_miniflow: the Exercises panel's endpoints are under /miniflow/")
