"""Interactive views of the book: ipywidgets apps that only wire.

    KsmStepper(scene_factory)        Step 1 page / Step batch / Full scan / Reset
    ActionStepper(factory, actions)  a script of process actions, one at a time
    WalkExplorer(scene)              pick a page, watch its page-table walk
    Knobs(machine)                   KSM tunables written through sysfs

Each keeps one FigureWidget per view and updates it in place; each has a
``text()`` twin that prints what it shows.  No simulation logic lives here.
"""
from .app import SceneApp
from .knobs import Knobs
from .stepper import ActionStepper, KsmStepper
from .views import VIEWS, FigureView
from .walk import WalkExplorer

__all__ = ["SceneApp", "KsmStepper", "ActionStepper", "WalkExplorer", "Knobs", "VIEWS",
           "FigureView"]
