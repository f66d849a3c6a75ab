"""Instructor-side tools for the miniflow course, built on nbgrader."""
