"""Figures of the book: plotly builders that are pure functions of snapshots.

    snap = snapshot(scene_or_machine)        # plain data, the model is only read
    frame_map_figure(snap); mappings_figure(snap); trees_figure(snap)
    counters_figure(history); pagewalk_figure(walk(scene, "vm1", addr))

Every builder has a text twin (``*_text``) that prints what the figure shows,
and keeps a fixed list of traces so widgets can update it in place
(``sync_figure``).  Nothing here imports ipywidgets or mutates the model.
"""
from .events import counters_line, describe_event, describe_events
from .frames import frame_map_figure, frame_map_text
from .mappings import mappings_figure, mappings_text
from .pagewalk import pagewalk_figure, pagewalk_text
from .snapshot import (MachineSnapshot, WalkSnapshot, content_tag, snapshot, walk)
from .style import sync_figure
from .timeline import counters_figure, counters_table
from .trees import tree_layout, trees_figure, trees_text
from . import render as _render

_render.install()       # saved notebooks carry text/html (+ an image) beside plotly's JSON

__all__ = ["snapshot", "walk", "MachineSnapshot", "WalkSnapshot", "content_tag",
           "frame_map_figure", "frame_map_text", "mappings_figure", "mappings_text",
           "trees_figure", "trees_text", "tree_layout", "counters_figure", "counters_table",
           "pagewalk_figure", "pagewalk_text", "describe_event", "describe_events",
           "counters_line", "sync_figure"]
