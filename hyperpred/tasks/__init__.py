"""Task families: what targets are trained on, with descriptors and support/query data."""

from hyperpred.tasks.base import Task, TaskBatch, masked_accuracy, masked_cross_entropy, masked_mse
from hyperpred.tasks.digits import DigitsTask
from hyperpred.tasks.sine import SineTask
from hyperpred.tasks.sinsum import SinSumTask
from hyperpred.tasks.tabular import TabularTask
from hyperpred.tasks.teacher import TeacherTask

__all__ = [
    "Task",
    "TaskBatch",
    "masked_mse",
    "masked_cross_entropy",
    "masked_accuracy",
    "SineTask",
    "SinSumTask",
    "TeacherTask",
    "DigitsTask",
    "TabularTask",
]
