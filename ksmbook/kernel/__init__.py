"""The simulated kernel.  Nothing here imports a UI library."""
from .errors import SegmentationFault
from .machine import Machine

__all__ = ["Machine", "SegmentationFault"]
