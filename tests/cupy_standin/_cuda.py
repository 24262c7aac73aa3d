"""``cupy.cuda``: one pretend device, the null stream, events, and the ``runtime`` calls that
minivit and its benchmarks make."""

import time

import numpy as np  # noqa: F401

from ._names import VERSION


class CUDARuntimeError(RuntimeError):
    pass


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        pass

    def synchronize(self):
        pass

    @property
    def compute_capability(self):
        return "90"

    def mem_info(self):
        return memGetInfo()


class Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0

    def synchronize(self):
        pass

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream(null=True)


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._t = None

    def record(self, stream=None):
        self._t = time.perf_counter()

    def synchronize(self):
        pass

    @property
    def done(self):
        return True


def get_elapsed_time(start_event, end_event):
    return (end_event._t - start_event._t) * 1000.0


def get_device_id():
    return 0


def is_available():
    return True


def get_current_stream(device_id=-1):
    return Stream.null


# cupy.cuda.runtime ---------------------------------------------------------------------

def getDeviceCount():
    return 1


def getDevice():
    return 0


def deviceSynchronize():
    pass


def getDeviceProperties(device):
    return {"name": f"CuPy {VERSION} stand-in (NumPy on the CPU)".encode(),
            "totalGlobalMem": 8 << 30, "multiProcessorCount": 1, "major": 9, "minor": 0}


def runtimeGetVersion():
    return 13000


def driverGetVersion():
    return 13000


def memGetInfo():
    return (8 << 30, 8 << 30)


RUNTIME = {"CUDARuntimeError": CUDARuntimeError, "getDeviceCount": getDeviceCount,
           "getDevice": getDevice, "deviceSynchronize": deviceSynchronize,
           "getDeviceProperties": getDeviceProperties, "runtimeGetVersion": runtimeGetVersion,
           "driverGetVersion": driverGetVersion, "memGetInfo": memGetInfo,
           "is_hip": False}
CUDA = {"Device": Device, "Stream": Stream, "Event": Event, "get_elapsed_time": get_elapsed_time,
        "get_device_id": get_device_id, "is_available": is_available,
        "get_current_stream": get_current_stream}
