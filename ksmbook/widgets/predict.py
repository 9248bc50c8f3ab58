"""Predict, then step: a panel that asks the reader for a guess before a Step and
checks it against what the simulator did.

    KsmStepper(scene_factory, predict=FramePredict())      # which frame survives?
    KsmStepper(scene_factory, predict=CounterPredict())    # which counters move?

The panel only wires: the answer is ``viz.predict``'s reading of the snapshots
taken before and after the step (never a stored answer), so it is right for any
scene, knob setting or kernel version.  ``guess(value)`` is what a click does.
"""
from __future__ import annotations

import html

import ipywidgets as w

from ..viz import predict as outcomes


class Predict:
    """Base panel: a question, a choice widget, the verdict of the last step."""

    title = "Predict, then step"
    #: the stepper actions (KsmStepper labels start with these) the question is about
    checks = ("scan(", "run_full_scans(")

    def __init__(self):
        self.question = w.HTML().add_class("ksmbook-predict-question")
        self.verdict = w.HTML().add_class("ksmbook-predict-verdict")
        self.last = None            # (guess, Outcome, right?) of the last checked step
        self.checked = 0
        self.right = 0
        self.choice = self._choice_widget()
        self.box = w.VBox([self.question, self.choice, self.verdict])
        self.box.add_class("ksmbook-predict")
        self._verdict_html("")

    # --- subclasses ---
    def _choice_widget(self):
        raise NotImplementedError

    def current_guess(self):
        raise NotImplementedError

    def guess(self, value) -> None:
        """Set the reader's guess (what a click on the choices does)."""
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def outcome(self, before, after) -> outcomes.Outcome:
        raise NotImplementedError

    def ask(self, snap) -> str:
        raise NotImplementedError

    def words(self, answer) -> str:
        raise NotImplementedError

    # --- the flow ---
    def applies(self, action: str) -> bool:
        return action.startswith(self.checks)

    def arm(self, snap) -> None:
        """Show the question for the next step (the snapshot the reader sees now)."""
        self.question.value = (f"<b>{html.escape(self.title)}.</b> "
                               + html.escape(self.ask(snap)))

    def after_step(self, action: str, before, after) -> None:
        """Check the guess made before ``action`` against what it did, then re-arm."""
        if before is None:
            return
        if not self.applies(action):
            self._verdict_html(f"(this question is checked on {self.checks_words()}; "
                               "your guess is kept)")
            self.arm(after)
            return
        got = self.outcome(before, after)
        guess = self.current_guess()
        self.checked += 1
        if guess is None:
            self.last = (None, got, None)
            self._verdict_html(f"No guess this time. What happened: {self.words(got.answer)}. "
                               f"{got.explanation}")
        else:
            right = guess == got.answer
            self.right += right
            self.last = (guess, got, right)
            head = "✔ Right" if right else f"✘ Not this time: you said {self.words(guess)}"
            self._verdict_html(f"{head}. What happened: {self.words(got.answer)}. "
                               f"{got.explanation}", ok=right)
        self.clear()
        self.arm(after)

    def reset(self, snap) -> None:
        self.last = None
        self.clear()
        self._verdict_html("")
        self.arm(snap)

    def checks_words(self) -> str:
        return "Step 1 page" if self.checks == ("scan(1)",) else "every step"

    def _verdict_html(self, text: str, ok: bool | None = None) -> None:
        colour = {True: "#E6F4EA", False: "#FDECEA", None: "#F5F5F5"}[ok]
        self.verdict.value = (f"<div style='background:{colour};padding:4px 8px;"
                              f"white-space:normal'>{html.escape(text) or '&nbsp;'}</div>")
        self._verdict_text = text

    def text(self) -> str:
        q = html.unescape(self.question.value.replace("<b>", "").replace("</b>", ""))
        guess = self.current_guess()
        out = [q, "your guess: " + (self.words(guess) if guess is not None else "(none yet)")]
        if self._verdict_text:
            out.append(self._verdict_text)
        return "\n".join(out)


class FramePredict(Predict):
    """Which frame holds the content after the next Step 1 page?"""

    checks = ("scan(1)",)

    def _choice_widget(self):
        c = w.RadioButtons(options=[(text, key) for key, text in outcomes.FRAME_CHOICES],
                           value=None, layout=w.Layout(width="auto"))
        c.add_class("ksmbook-predict-choice")
        return c

    def current_guess(self):
        return self.choice.value

    def guess(self, value) -> None:
        self.choice.value = value

    def clear(self) -> None:
        self.choice.value = None

    def outcome(self, before, after):
        return outcomes.frame_outcome(before, after)

    def words(self, answer) -> str:
        return outcomes.FRAME_WORDS.get(answer, str(answer))

    def ask(self, snap) -> str:
        mapped = {m.label for m in snap.mappings}
        nxt = (f"ksmd's cursor is at {snap.cursor}. " if snap.cursor in mapped else "")
        return (nxt + "Pick a guess, then press Step 1 page: if the page ksmd processes merges, "
                "whose frame will hold the content afterwards?")


class CounterPredict(Predict):
    """Which of KSM's counters will the next step change?"""

    def __init__(self, counters=outcomes.COUNTER_CHOICES):
        self.counters = tuple(counters)
        super().__init__()

    def _choice_widget(self):
        self.boxes = {n: w.Checkbox(value=False, description=n, indent=False,
                                    layout=w.Layout(width="auto", margin="0 12px 0 0"))
                      for n in self.counters}
        for b in self.boxes.values():
            b.add_class("ksmbook-predict-choice")
        self.none = w.Checkbox(value=False, description="none of them", indent=False,
                               layout=w.Layout(width="auto"))
        self.none.add_class("ksmbook-predict-choice")
        return w.HBox([*self.boxes.values(), self.none], layout=w.Layout(flex_flow="row wrap"))

    def current_guess(self):
        picked = frozenset(n for n, b in self.boxes.items() if b.value)
        if picked:
            return picked
        return frozenset() if self.none.value else None

    def guess(self, value) -> None:
        value = frozenset(value)
        unknown = value - set(self.counters)
        if unknown:
            raise ValueError(f"not a counter of this question: {sorted(unknown)}")
        for n, b in self.boxes.items():
            b.value = n in value
        self.none.value = not value

    def clear(self) -> None:
        for b in self.boxes.values():
            b.value = False
        self.none.value = False

    def outcome(self, before, after):
        return outcomes.counters_outcome(before, after, self.counters)

    def words(self, answer) -> str:
        return ", ".join(n for n in self.counters if n in answer) or "none of them"

    def ask(self, snap) -> str:
        return ("Tick every counter you expect the next step (Step 1 page, Step batch or "
                "Full scan) to change, or 'none of them', then press the step.")
