"""Built-in loggers: ``csv`` (no dependency) and ``tensorboard`` (the optional extra
``harness[tensorboard]``; the class is listed without it and says what to install when
a run asks for it)."""

from harness.api.hookspecs import hookimpl
from harness_plugins.loggers.csv_logger import CsvLogger
from harness_plugins.loggers.tensorboard_logger import TensorBoardLogger

__all__ = ["CsvLogger", "TensorBoardLogger"]


@hookimpl
def harness_register_loggers(register):
    for cls in (CsvLogger, TensorBoardLogger):
        register(cls)
