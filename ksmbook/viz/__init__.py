"""The figures of the book, and their text twins.

DOC: Overview.  Drawing never touches the model.  ``snapshot(machine_or_scene)``
first copies what a figure needs (counters, page tables, frames, KSM's trees and
rmap_items) into plain frozen data (snapshot.py); every builder is a pure
function of such snapshots, events or lab results and returns a plotly Figure,
so a figure can be drawn again from stored data and tested without a kernel:

    snap = snapshot(scene_or_machine)        # plain data, the model is only read
    frame_map_figure(snap); mappings_figure(snap); trees_figure(snap)
    counters_figure(history); pagewalk_figure(walk(scene, "vm1", addr))
    trees_figure(after, before=before)       # ... and what moved between two snapshots
    visit_grid_figure([snap0, snap1, ...])   # smart scan: pages x full scans

Every builder has a text twin (``*_text``) that says in words what the figure
shows, for screen readers, for tests and for the static page.  A builder keeps
a fixed list of traces so that a widget can update its figure in place
(``style.sync_figure``).  style.py holds the one look (Okabe-Ito colours, each
paired with a second cue), render.py how a figure is saved in a notebook
(plotly JSON plus HTML and an optional static image).  Chapter modules
(kvm, notifiers, compare, tuning, guests, sidechannel) draw the labs' results.
Nothing here imports ipywidgets or mutates the model.
"""
from .events import counters_line, describe_event, describe_events
from .frames import frame_map_figure, frame_map_text
from .mappings import mappings_figure, mappings_text
from .pagewalk import pagewalk_figure, pagewalk_text
from .snapshot import (MachineSnapshot, WalkSnapshot, content_tag, snapshot, walk)
from .style import sync_figure
from .timeline import counters_figure, counters_table
from .trees import tree_layout, tree_moves, trees_figure, trees_text
from .visits import visit_grid_figure, visit_grid_text
from . import render as _render

_render.install()       # saved notebooks carry text/html (+ an image) beside plotly's JSON

__all__ = ["snapshot", "walk", "MachineSnapshot", "WalkSnapshot", "content_tag",
           "frame_map_figure", "frame_map_text", "mappings_figure", "mappings_text",
           "trees_figure", "trees_text", "tree_layout", "tree_moves",
           "visit_grid_figure", "visit_grid_text", "counters_figure", "counters_table",
           "pagewalk_figure", "pagewalk_text", "describe_event", "describe_events",
           "counters_line", "sync_figure"]
