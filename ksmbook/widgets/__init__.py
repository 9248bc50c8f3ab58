"""The interactive views of the book: ipywidgets apps that only wire.

DOC: Overview.  A widget owns a model built by ``ksmbook.labs`` or the
kernel, and buttons whose handlers call the simulator's public API only
(``m.ksmd.scan``, ``p.write``, a sysfs write ...).  After each action the app
takes a new snapshot, asks ``ksmbook.viz`` for the figures and shows them in
its live figures (``Plot``, plot.py: every view, old or new, draws the last one;
views.py), records the events the step
produced, and keeps a ``text()`` twin that prints exactly what is on screen.
No simulation and no drawing logic lives here: a widget that needs a number
asks the model, a widget that needs a picture asks viz.

    KsmStepper(scene_factory)        Step 1 page / Step batch / Full scan / Reset
    ActionStepper(factory, actions)  a script of process actions, one at a time
    WalkExplorer(scene)              pick a page, watch its page-table walk
    Knobs(machine)                   KSM tunables written through sysfs
    FramePredict(), CounterPredict() predict-then-step panels: KsmStepper(..., predict=)

Chapter apps (eras, tuning, sidechannel, live) follow the same pattern; the
live one touches the host's KSM only on an explicit click and says first what
it will touch.
"""
from .app import SceneApp
from .knobs import Knobs
from .predict import CounterPredict, FramePredict
from .stepper import ActionStepper, KsmStepper
from .views import VIEWS, FigureView
from .walk import WalkExplorer

__all__ = ["SceneApp", "KsmStepper", "ActionStepper", "WalkExplorer", "Knobs", "FramePredict",
           "CounterPredict", "VIEWS",
           "FigureView"]
