"""Widgets that show a miniflow graph at work, in a notebook.

    GradientFlow(output, feed_dict)    values and gradients of a graph, with sliders
    TrainingView(total_steps)          live loss and accuracy curves with a progress bar
    Playground()                       a small 2-D classifier learning as you watch

They run your own nodes, so they show what your code does, unfinished parts
included. They need ipywidgets and anywidget; `import miniflow` does not.
"""

from .gradient_flow import GradientFlow
from .playground import Playground
from .training import TrainingView

__all__ = ["GradientFlow", "Playground", "TrainingView"]
