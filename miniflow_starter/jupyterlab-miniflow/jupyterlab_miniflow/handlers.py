"""REST endpoints under /miniflow/ for the Exercises panel (all authenticated, as jupyter_server's APIs).

    GET  /miniflow/exercises?path=DIR   the lab folder at or above DIR: notebooks, exercises, points, stubs
    POST /miniflow/check {"path": DIR}  the same with each exercise's status from the visible tests
    POST /miniflow/submission {"path": DIR}   check, validate, write the zip; its receipt

A check runs in a process of its own, never in the server; a newer check of the same folder
supersedes a running one, whose request then answers {"superseded": true}.
"""

import json
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .exercises import Checker, find_lab_folder, list_exercises, with_statuses
from .submission import SubmissionError, prepare_submission


class MiniflowHandler(APIHandler):
    def initialize(self, checker):
        self.checker = checker

    def lab_folder(self, path):
        folder = find_lab_folder(self.settings["server_root_dir"], path or "")
        if folder is None:
            raise web.HTTPError(
                404, f"no lab folder (notebooks beside a miniflow/ package) at or above {path!r}"
            )
        return folder

    def requested_path(self):
        body = self.get_json_body() or {}
        return str(body.get("path", ""))

    def listing(self, folder):
        """The exercises of `folder`, with the folder as the file browser names it (relative to the root)."""
        listing = list_exercises(folder)
        listing["folder"] = folder.relative_to(Path(self.settings["server_root_dir"]).resolve()).as_posix()
        listing["folder"] = "" if listing["folder"] == "." else listing["folder"]
        return listing

    async def checked_listing(self, folder, purpose="panel", notebooks=()):
        results = await self.checker.check(folder, purpose, notebooks)
        if results is None:
            return None
        return with_statuses(self.listing(folder), *results, notebooks=notebooks)


class ExercisesHandler(MiniflowHandler):
    @web.authenticated
    def get(self):
        folder = self.lab_folder(self.get_argument("path", ""))
        listing = self.listing(folder)
        listing["checking"] = self.checker.is_running(folder)
        self.finish(json.dumps(listing))


class CheckHandler(MiniflowHandler):
    @web.authenticated
    async def post(self):
        # "notebooks": check only these first (those a saved file concerns), for a quick answer.
        body = self.get_json_body() or {}
        notebooks = [str(name) for name in body.get("notebooks", []) if "/" not in str(name)]
        listing = await self.checked_listing(self.lab_folder(self.requested_path()), notebooks=notebooks)
        self.finish(json.dumps(listing if listing is not None else {"superseded": True}))


class SubmissionHandler(MiniflowHandler):
    @web.authenticated
    async def post(self):
        folder = self.lab_folder(self.requested_path())
        listing = await self.checked_listing(folder, "submission")
        if listing is None:
            self.finish(json.dumps({"superseded": True}))
            return
        try:
            receipt = prepare_submission(folder, listing)
        except SubmissionError as error:
            raise web.HTTPError(400, str(error)) from None
        # The zip's path as the file browser names it: relative to the server's root.
        root = Path(self.settings["server_root_dir"]).resolve()
        receipt["zip"] = (folder / receipt["zip"]).relative_to(root).as_posix()
        self.finish(json.dumps(receipt))


def setup_route_handlers(web_app):
    base_url = web_app.settings["base_url"]
    checker = Checker()
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base_url, "miniflow", name), handler, {"checker": checker})
            for name, handler in [
                ("exercises", ExercisesHandler),
                ("check", CheckHandler),
                ("submission", SubmissionHandler),
            ]
        ],
    )
