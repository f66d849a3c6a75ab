"""The self-check shown as a widget: the results table and a button to check again."""

import ipywidgets as widgets

from ..selfcheck import check


class SelfCheckView(widgets.VBox):
    """Shows a CheckReport; "check again" reruns the checks on the package as it is now."""

    def __init__(self, report):
        self.report = report
        self.table = widgets.HTML(report._repr_html_())
        again = widgets.Button(description="check again", icon="refresh")
        again.on_click(lambda _: self.rerun())
        super().__init__([self.table, again])

    def rerun(self):
        self.report = check(self.report.folder)
        self.table.value = self.report._repr_html_()

    def _repr_mimebundle_(self, **kwargs):
        # The table travels with the live widget, for notebooks saved or exported without a kernel.
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["text/html"] = self.report._repr_html_()
        return bundle
