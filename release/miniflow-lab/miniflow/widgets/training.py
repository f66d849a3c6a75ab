"""TrainingView: live loss and accuracy curves, with a progress bar, while a network trains."""

import time

import ipywidgets as widgets

from .charts import line_chart, side_by_side
from .svg_view import SvgView, with_static_picture

TRAIN, VALIDATION = "#2b6cb0", "#dd6b20"


class TrainingView(widgets.VBox):
    """Shows training as it happens: a progress bar and curves of loss and accuracy.

    Example:
        view = TrainingView(total_steps=epochs * len(batches))
        display(view)
        step = 0
        for epoch in range(epochs):
            for X_batch, y_batch in batches:
                loss, _ = value_and_grad(cost, {...}, trainables)
                sgd_update(trainables, learning_rate)
                step += 1
                view.log(step, train_loss=loss)
            view.log(step, val_loss=..., val_accuracy=..., train_accuracy=...)
        view.finish()

    The curves are redrawn at most every `redraw_every` seconds, so logging
    every batch costs the training almost nothing. After finish(), the
    notebook keeps a picture of the final curves for exports.
    """

    def __init__(self, total_steps, redraw_every=0.5):
        self.total_steps = total_steps
        self.redraw_every = redraw_every
        self.history = {"train_loss": [], "val_loss": [], "train_accuracy": [], "val_accuracy": []}
        self.step = 0
        self.started = time.monotonic()
        self.last_redraw = float("-inf")
        self.display_handle = None
        self.progress = widgets.IntProgress(value=0, min=0, max=total_steps, description="training")
        self.status = widgets.Label()
        self.chart = SvgView()
        super().__init__([widgets.HBox([self.progress, self.status]), self.chart])
        self.redraw()

    def log(self, step, train_loss=None, train_accuracy=None, val_loss=None, val_accuracy=None):
        """Record the metrics reached at `step` (any of them; None: not measured now)."""
        self.step = step
        measured = {
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        for name, value in measured.items():
            if value is not None:
                self.history[name].append((step, float(value)))
        if step >= self.total_steps or time.monotonic() - self.last_redraw >= self.redraw_every:
            self.redraw()

    def finish(self):
        """Draw the final curves and keep them as the notebook's static picture."""
        self.redraw()
        if self.display_handle is not None:
            self.display_handle.update(self._repr_mimebundle_(), raw=True)

    def redraw(self):
        self.last_redraw = time.monotonic()
        self.progress.value = min(self.step, self.total_steps)
        self.status.value = status_text(self)
        loss = line_chart(
            "loss",
            {
                "train": (TRAIN, False, self.history["train_loss"]),
                "validation": (VALIDATION, True, self.history["val_loss"]),
            },
            x_max=self.total_steps,
        )
        accuracy = line_chart(
            "accuracy",
            {
                "train": (TRAIN, False, self.history["train_accuracy"]),
                "validation": (VALIDATION, True, self.history["val_accuracy"]),
            },
            y_range=(0.0, 1.0),
            x_max=self.total_steps,
        )
        self.chart.svg = side_by_side(loss, accuracy)

    def _repr_mimebundle_(self, **kwargs):
        return with_static_picture(super()._repr_mimebundle_(**kwargs), self.chart.svg)

    def _ipython_display_(self):
        # Displayed with an id, so that finish() can replace the static picture with the final one.
        from IPython.display import display

        self.display_handle = display(self._repr_mimebundle_(), raw=True, display_id=True)


def status_text(view):
    """'step 120 of 4690 · 35 s · train loss 0.31 · val accuracy 95.1%'."""
    parts = [f"step {view.step} of {view.total_steps}", f"{time.monotonic() - view.started:.0f} s"]
    for name, points in view.history.items():
        if points:
            value = points[-1][1]
            shown = f"{100 * value:.1f}%" if name.endswith("accuracy") else f"{value:.4g}"
            parts.append(f"{name.replace('_', ' ')} {shown}")
    return "  ·  ".join(parts)
