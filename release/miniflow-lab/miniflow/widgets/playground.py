"""Playground: a small network learning to sort 2-D points, drawn as it learns.

In the spirit of TensorFlow Playground: pick a data set, press play, and
watch the decision boundary move. The network is built from your own
miniflow nodes: Linear -> Sigmoid -> Linear -> CrossEntropyWithSoftmax,
trained by gradient descent on the whole data set.
"""

import asyncio
from html import escape

import ipywidgets as widgets
import numpy as np

from .. import graph, layers, losses, node, optim
from .charts import line_chart
from .svg_view import SvgView

SIZE = 320  # pixels of the square picture
GRID = 30  # the boundary is drawn as GRID x GRID cells
EXTENT = 1.6  # the picture shows [-EXTENT, EXTENT] in both directions
CLASS_COLOURS = ((221, 107, 32), (43, 108, 176))  # class 0 orange, class 1 blue


def make_dataset(name, count=200, seed=0):
    """Points (count, 2) in about [-1.3, 1.3]^2 and their labels 0 or 1."""
    rng = np.random.default_rng(seed)
    if name == "circles":
        radius = np.concatenate([rng.uniform(0, 0.5, count // 2), rng.uniform(0.8, 1.2, count - count // 2)])
        angle = rng.uniform(0, 2 * np.pi, count)
        points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        labels = (radius < 0.65).astype(np.int64)
    elif name == "xor":
        points = rng.uniform(-1.2, 1.2, (count, 2))
        labels = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
    elif name == "moons":
        labels = np.arange(count) % 2
        angle = rng.uniform(0, np.pi, count)
        upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        lower = np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
        points = np.where(labels[:, None] == 0, upper, lower) - [0.5, 0.25]
        points = points * 0.9 + rng.normal(0, 0.08, (count, 2))
    elif name == "blobs":
        labels = np.arange(count) % 2
        points = rng.normal(0, 0.35, (count, 2)) + np.where(labels[:, None] == 1, 0.6, -0.6)
    else:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
    return points.astype(np.float64), labels.astype(np.int64)


DATASETS = ("circles", "xor", "moons", "blobs")


class Network:
    """Linear -> Sigmoid -> Linear, with a cross-entropy loss, built from the package's nodes."""

    def __init__(self, hidden_units, seed=0):
        rng = np.random.default_rng(seed)
        self.X, self.labels = node.Input("X"), node.Input("labels")
        self.W1, self.b1 = node.Input("W1"), node.Input("b1")
        self.W2, self.b2 = node.Input("W2"), node.Input("b2")
        hidden = layers.Sigmoid(layers.Linear(self.X, self.W1, self.b1))
        self.logits = layers.Linear(hidden, self.W2, self.b2)
        self.loss = losses.CrossEntropyWithSoftmax(self.logits, self.labels)
        self.weights = {
            self.W1: rng.normal(0, 1.0, (2, hidden_units)),
            self.b1: np.zeros(hidden_units),
            self.W2: rng.normal(0, 1.0, (hidden_units, 2)),
            self.b2: np.zeros(2),
        }

    def train_step(self, points, labels, learning_rate):
        """One step of gradient descent on all the points; returns the loss before the step."""
        feed_dict = {self.X: points, self.labels: labels, **self.weights}
        trainables = list(self.weights)
        loss, _ = graph.value_and_grad(self.loss, feed_dict, trainables)
        optim.sgd_update(trainables, learning_rate)  # updates the arrays in self.weights in place
        return float(loss)

    def class_one_probability(self, points):
        logits, _ = graph.value_and_grad(self.logits, {self.X: points, **self.weights})
        return 1 / (1 + np.exp(-np.clip(logits[:, 1] - logits[:, 0], -30, 30)))


class Playground(widgets.VBox):
    """Train a small classifier on 2-D points with play, pause and step.

    Example:
        Playground(dataset="circles", hidden_units=6, learning_rate=2.0)

    Args:
        dataset: "circles", "xor", "moons" or "blobs".
        hidden_units: the width of the hidden layer.
        learning_rate: the step size of gradient descent.
        steps_per_frame: training steps between two pictures.
    """

    def __init__(self, dataset="circles", hidden_units=6, learning_rate=2.0, steps_per_frame=10, seed=0):
        self.seed = seed
        self.steps_per_frame = steps_per_frame
        self.task = None
        self.play_button = widgets.ToggleButton(description="▶ play", value=False)
        self.step_button = widgets.Button(description="step")
        self.reset_button = widgets.Button(description="reset")
        wide_label = {"description_width": "initial"}
        self.dataset = widgets.Dropdown(options=DATASETS, value=dataset, description="data")
        self.hidden_units = widgets.IntSlider(
            value=hidden_units, min=1, max=16, description="hidden units", style=wide_label
        )
        self.learning_rate = widgets.FloatLogSlider(
            value=learning_rate,
            base=10,
            min=-2,
            max=1,
            step=0.1,
            description="learning rate",
            style=wide_label,
        )
        self.status = widgets.Label()
        self.picture = SvgView()
        self.play_button.observe(self.play_or_pause, "value")
        self.step_button.on_click(lambda _: self.advance())
        self.reset_button.on_click(lambda _: self.reset())
        self.dataset.observe(lambda _: self.reset(), "value")
        self.hidden_units.observe(lambda _: self.reset(), "value")
        super().__init__(
            [
                widgets.HBox([self.play_button, self.step_button, self.reset_button, self.status]),
                widgets.HBox([self.dataset, self.hidden_units, self.learning_rate]),
                self.picture,
            ]
        )
        self.reset()

    def reset(self):
        """New data and fresh random weights; the epoch count starts again."""
        self.points, self.labels = make_dataset(self.dataset.value, seed=self.seed)
        self.network = None
        self.error = ""
        self.epoch = 0
        self.losses = []
        try:
            self.network = Network(self.hidden_units.value, seed=self.seed)
        except Exception as error:  # the package cannot even build the graph
            self.stop_with(error)
        self.draw()

    def advance(self, steps=None):
        """Train `steps` steps (steps_per_frame by default), then redraw."""
        if self.network is None or self.error:
            return
        try:
            with np.errstate(all="ignore"):
                for _ in range(steps or self.steps_per_frame):
                    self.losses.append(
                        (
                            self.epoch,
                            self.network.train_step(self.points, self.labels, self.learning_rate.value),
                        )
                    )
                    self.epoch += 1
        except Exception as error:  # an unfinished node: say so instead of a traceback
            self.stop_with(error)
        self.draw()

    def stop_with(self, error):
        kind = "not implemented yet" if isinstance(error, NotImplementedError) else type(error).__name__
        self.error = f"{kind}: {error}"
        self.play_button.value = False

    # -- play and pause ----------------------------------------------------------------------------

    def play_or_pause(self, change):
        self.play_button.description = "⏸ pause" if change["new"] else "▶ play"
        if change["new"] and (self.task is None or self.task.done()):
            self.task = asyncio.ensure_future(self.play())

    async def play(self):
        """Train frame after frame while the play button is down.

        Awaiting between frames lets the kernel handle the next button press.
        """
        while self.play_button.value and not self.error:
            self.advance()
            await asyncio.sleep(0.02)

    # -- drawing -----------------------------------------------------------------------------------

    def draw(self):
        accuracy = self.accuracy()
        parts = [f"epoch {self.epoch}"]
        if self.losses:
            parts.append(f"loss {self.losses[-1][1]:.3f}")
        if accuracy is not None:
            parts.append(f"accuracy {100 * accuracy:.0f}%")
        self.status.value = self.error or "  ·  ".join(parts)
        self.picture.svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE + 340}" height="{SIZE}" '
            f'data-epoch="{self.epoch}">{self.boundary_svg()}'
            f'<g transform="translate({SIZE + 10},40)">{self.loss_chart()}</g></svg>'
        )

    def accuracy(self):
        if self.network is None or self.error:
            return None
        try:
            with np.errstate(all="ignore"):
                predicted = self.network.class_one_probability(self.points) > 0.5
        except Exception as error:
            self.stop_with(error)
            return None
        return float(np.mean(predicted == self.labels))

    def boundary_svg(self):
        """The probability of class 1 over the plane as coloured cells, and the data on top."""
        cell = SIZE / GRID
        out = [f'<rect width="{SIZE}" height="{SIZE}" fill="#f7fafc" stroke="#cbd5e0"/>']
        if self.network is not None and not self.error:
            centres = (np.arange(GRID) + 0.5) / GRID * 2 * EXTENT - EXTENT
            grid = np.array([(x, y) for y in centres[::-1] for x in centres])
            with np.errstate(all="ignore"):
                probability = self.network.class_one_probability(grid)
            for index, p in enumerate(probability):
                row, column = divmod(index, GRID)
                out.append(
                    f'<rect x="{column * cell:.1f}" y="{row * cell:.1f}" width="{cell + 0.5:.1f}" '
                    f'height="{cell + 0.5:.1f}" fill="{blend(p)}"/>'
                )
        for (x, y), label in zip(self.points, self.labels, strict=True):
            px, py = (x + EXTENT) / (2 * EXTENT) * SIZE, (EXTENT - y) / (2 * EXTENT) * SIZE
            r, g, b = CLASS_COLOURS[label]
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="rgb({r},{g},{b})" stroke="#ffffff"/>'
            )
        if self.error:
            out.append(
                f'<text x="10" y="{SIZE / 2}" fill="#c53030" font-size="12" data-role="error">'
                f"{escape(self.error[:60])}</text>"
            )
        return "<g data-role='boundary'>" + "".join(out) + "</g>"

    def loss_chart(self):
        return line_chart(
            "training loss", {"loss": ("#2b6cb0", False, self.losses)}, x_max=max(self.epoch, 1)
        )


def blend(probability):
    """The colour of a cell: orange where class 0 is likely, blue for class 1, pale in between."""
    weight = abs(probability - 0.5) * 2 * 0.6  # at most 60% colour, so the points stay visible
    r, g, b = CLASS_COLOURS[int(probability > 0.5)]
    mix = [round(255 + (channel - 255) * weight) for channel in (r, g, b)]
    return f"rgb({mix[0]},{mix[1]},{mix[2]})"
