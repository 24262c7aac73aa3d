"""Graded exercises: write a backward pass of the ViT by hand, and minivit grades it.

    minivit exercise list                        the exercises, in order
    minivit exercise new linear --out ex1.py     a stub: the statement, the forward, your function
    minivit exercise check ex1.py                finite differences, minivit's answer, PyTorch
    minivit exercise solution linear --out a.py  the library's own code, for when you are stuck

Each exercise is one module here (``linear.py``, ``softmax.py``, ...: ``exercise.py`` says
what they define); ``registry.py`` lists them in order, ``text.py`` writes the learner's file
from the library's source, ``grader.py`` grades it.  See docs/exercises.md.
"""

from minivit.exercises.registry import EXERCISES, get_exercise

__all__ = ["EXERCISES", "get_exercise"]
