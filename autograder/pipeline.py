"""nbgrader's configuration for grading the miniflow course: nbgrader's pipeline with our preprocessors.

`configure(c)` sets it on a traitlets config. `miniflow-course grade` applies it
on top of the course's nbgrader_config.py; with these lines in that file,
nbgrader's own `autograde` and `generate_feedback` and the formgrader grade
the same way:

    from autograder.pipeline import configure
    configure(c)
"""

import os
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from .preprocessors import (
    HideHiddenTests,
    RecordedTests,
    RestoreCells,
    SandboxedExecute,
    ShowGradingNotes,
    StderrIsNotFailure,
)


def configure(c):
    """nbgrader's Autograde and GenerateFeedback steps, ours in place of or beside its own.

    Kernels may read the MNIST folder that $MINIFLOW_DATA names, if set.
    """
    c.Autograde.sanitize_preprocessors = [
        ClearOutput,
        DeduplicateIds,
        OverwriteKernelspec,
        RestoreCells,  # in place of OverwriteCells
        CheckCellMetadata,
    ]
    c.Autograde.autograde_preprocessors = [
        SandboxedExecute,  # in place of Execute
        IgnorePattern,
        StderrIsNotFailure,
        ClearMetadataPreprocessor,
        LimitOutput,
        RecordedTests,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    if os.environ.get("MINIFLOW_DATA"):
        c.SandboxedKernelManager.read_only_paths = [str(Path(os.environ["MINIFLOW_DATA"]).resolve())]
    # Feedback pages show what student code printed: sanitised (no scripts, no event handlers), and
    # a widget's static picture as an image before its HTML twin, which sanitising would strip.
    c.HTMLExporter.sanitize_html = True
    # The priority is set on the exporter's filter alone: nbgrader's preprocessors redefine the trait
    # unconfigurably and would warn of an NbConvertBase setting for every notebook.
    c.WidgetsDataTypeFilter.display_data_priority = [
        "image/svg+xml",
        "image/png",
        "image/jpeg",
        "text/html",
        "text/markdown",
        "text/latex",
        "text/plain",
    ]
    c.GenerateFeedback.preprocessors = [
        GetGrades,
        HideHiddenTests,
        ShowGradingNotes,
        CSSHTMLHeaderPreprocessor,
    ]
    return c
