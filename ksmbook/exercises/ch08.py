"""Chapter 08 exercises: many guests.  Every answer is computed by running the chapter's
lab (``ksmbook.labs.guests``) in the simulator."""
from __future__ import annotations

from ..labs import guests
from ..viz.guests import breakdown_figure
from .base import Exercise, Feedback, FigureExercise, as_int, as_ints, as_name


def _image(rng) -> guests.GuestImage:
    return guests.GuestImage(kernel=rng.choice((32, 64, 96, 128)),
                             libs=rng.choice((0, 64, 100, 160, 200)),
                             zero=rng.randint(4, 260),
                             private=rng.choice((32, 96)))


def _image_text(im: guests.GuestImage) -> str:
    return (f"{im.kernel} kernel, {im.libs} library, {im.zero} zero and {im.private} private "
            f"pages")


class OneGuest(Exercise):
    name = "one_guest"
    template = "One guest alone, {what} ({text}). How many frames does KSM save?"
    params = {"image": guests.GuestImage(), "what": "the chapter's image",
              "text": _image_text(guests.GuestImage())}

    def vary(self, rng):
        im = _image(rng)
        return {"image": im, "what": "its image", "text": _image_text(im)}
    parse = staticmethod(as_int)
    hints = ("With one guest there is no other guest to share with. What is alike *inside* it?",
             "use_zero_pages is 0: zero-filled pages merge into one ordinary KSM page.")

    def simulate(self):
        r = guests.measure(1, image=self.p["image"])
        return {"answer": r.saved_total, "zero": r.saved["zero"], "pages": r.image.zero}

    def explain(self, f):
        return (f"{f['answer']} frames: the {f['pages']} zero-filled pages become one KSM page "
                f"({f['zero']} saved). A lone guest still gains from KSM, all of it from "
                "free memory.")

    def why_not(self, answer, f):
        if answer == 0:
            return "Sharing happens inside one guest too: are any of its pages alike?"
        if answer == f["pages"]:
            return "One KSM page must stay to hold the zeroes (use_zero_pages=0)."
        return ""


class KaslrLoss(Exercise):
    name = "kaslr_loss"
    template = ("{n} identical guests ({text} each), then the same {n} with KASLR (each kernel "
                "relocated differently). How many more frames does the host need with KASLR?")
    params = {"n": 8, "image": guests.GuestImage(), "text": _image_text(guests.GuestImage())}

    def vary(self, rng):
        im = _image(rng)
        return {"n": rng.randint(2, 6), "image": im, "text": _image_text(im)}
    parse = staticmethod(as_int)
    hints = ("KASLR leaves the libraries and zero pages alike; only the kernel pages differ.",
             "Without KASLR, 8 copies of each kernel page need one frame.")

    def simulate(self):
        n, im = self.p["n"], self.p["image"]
        a, b = guests.measure(n, "identical", im), guests.measure(n, "identical, KASLR", im)
        return {"answer": a.saved_total - b.saved_total, "kernel": a.image.kernel}

    def explain(self, f):
        return (f"{f['answer']} frames = {f['kernel']} kernel pages × {self.p['n'] - 1}: with "
                "KASLR every guest's kernel is unique, so its pages no longer merge across "
                "guests.")


class DistroGuests(Exercise):
    name = "distro_guests"
    fixed_because = ("the first twin is guest distros+1, and the chapter's guest counts (1, 2, "
                     "4, 8, 16) round that to the same answer for 3 distros; not seeded")
    question = ("Guests of 3 distros, round robin. With how many guests (1, 2, 4, 8 or 16) does "
                "any kernel or library page first merge?")
    parse = staticmethod(as_int)
    hints = ("Guest i runs distro i mod 3.",)

    def simulate(self):
        for n in guests.GUEST_COUNTS:
            r = guests.measure(n, "3 distros")
            if r.saved["kernel"] or r.saved["libs"]:
                return {"answer": n}
        return {"answer": None}

    def explain(self, f):
        return (f"With {f['answer']} guests: guests 1-3 run three different distros, so the "
                "fourth guest is the first with a twin.")


class MostSaved(FigureExercise):
    """Read the breakdown figure (viz.guests.breakdown_figure) of a seeded host."""
    name = "most_saved"
    few_answers_because = ("the answer is one of three page kinds; the seed varies the guests, "
                           "the mix and the image")
    template = ("{n} guests, mix '{mix}', each guest with {text}. Draw "
                "`ch08.most_saved.figure()` and read the breakdown: which page kind saves the "
                "most frames: 'zero', 'kernel' or 'libs'?")
    params = {"n": 8, "mix": "identical", "image": guests.GuestImage(),
              "text": _image_text(guests.GuestImage())}
    answer_format = "a kind in quotes: 'zero', 'kernel' or 'libs'"
    parse = staticmethod(as_name)
    hints = ("Count pages per kind in one guest, and how many frames each kind keeps.",
             "With KASLR no kernel page is alike across guests; with several distros only "
             "guests of the same distro share kernel and libraries.")

    def vary(self, rng):
        im = _image(rng)
        return {"n": rng.randint(2, 6), "mix": rng.choice(tuple(guests.MIXES)), "image": im,
                "text": _image_text(im)}

    def simulate(self):
        r = guests.measure(self.p["n"], self.p["mix"], self.p["image"])
        best = max(("zero", "kernel", "libs"), key=lambda k: r.saved[k])
        return {"answer": best, "saved": dict(r.saved), "row": r}

    def draw(self, f):
        return breakdown_figure([f["row"]], title=f"Where the saving comes from: "
                                                  f"{self.p['n']} guests, {self.p['mix']}")

    def explain(self, f):
        s = f["saved"]
        return (f"'{f['answer']}': zero {s['zero']}, libs {s['libs']}, kernel {s['kernel']} frames. "
                "Free memory merges within a guest too; kernel and libraries only across "
                "guests that run the same build.")

    def why_not(self, answer, f):
        if answer not in ("zero", "kernel", "libs"):
            return "Answer with one of 'zero', 'kernel' or 'libs'."
        return ""


class CowBreaks(Exercise):
    name = "cow_breaks"
    kind = "function"
    fixed_because = "one function of mm/memory.c makes the copy, in every era the book models"
    question = ("A guest writes into a page that KSM merged. Which function of mm/memory.c "
                "gives it a private copy?")
    answer_format = "a function name in quotes, e.g. 'do_anonymous_page'"
    parse = staticmethod(as_name)
    hints = ("It is the write-protect fault handler's copy path (chapter 02).",)
    WHY_NOT = {
        "do_wp_page": "do_wp_page() handles the fault; for a KSM page it never reuses, it calls the copy path.",
        "do_anonymous_page": "That one fills a PTE that was empty; a merged page has a present, read-only PTE.",
        "break_ksm": "break_ksm() is KSM unmerging on its own (MADV_UNMERGEABLE, run=2), not a guest's write.",
    }

    def simulate(self):
        host = guests.Host(2)
        host.merge()
        before = host.machine.vmstat["cow_ksm"]
        host.diverge(0.1, kinds=("libs",))
        return {"answer": "wp_page_copy", "cow_ksm": host.machine.vmstat["cow_ksm"] - before}

    def explain(self, f):
        return (f"wp_page_copy(): do_wp_page() never reuses a KSM page, so each write copies; "
                f"here {f['cow_ksm']} writes did (vmstat cow_ksm).")

    def why_not(self, answer, f):
        return self.WHY_NOT.get(answer, "")


class ImageDesign(Exercise):
    """Design the guest image: the checker builds the host from the reader's image."""
    name = "image_design"
    kind = "design"
    template = ("{guests} guests with KASLR, each of 512 pages of which {private} are private. "
                "Choose how the other {shared} pages split into (kernel, libs, zero), with at "
                "least {min_kernel} kernel pages, so that the host saves at least {target}% of "
                "guest RAM.")
    params = {"guests": 8, "private": 96, "shared": 416, "min_kernel": 32, "target": 70}
    answer_format = "a tuple (kernel, libs, zero)"

    def vary(self, rng):
        n, private = rng.randint(3, 8), rng.choice((32, 64, 96, 128, 160))
        shared, k = 512 - private, rng.choice((16, 24, 32, 48, 64))
        best = self._measure(n, private, k, 0, shared - k).saved_percent
        return {"guests": n, "private": private, "shared": shared, "min_kernel": k,
                "target": int(best) - rng.randint(1, 6)}
    hints = ("With KASLR no kernel page is alike across guests: kernel pages save nothing.",
             "A library page saves n-1 frames in n guests (7 in 8); a zero page saves nearly n "
             "(one KSM page per 256 mappings, max_page_sharing). Free memory is the cheapest "
             "saving.")

    def normalise(self, answer):
        kernel, libs, zero = as_ints(answer, 3)
        if min(kernel, libs, zero) < 0:
            raise ValueError("page counts cannot be negative")
        return kernel, libs, zero

    def measure(self, kernel: int, libs: int, zero: int) -> guests.Measurement:
        return self._measure(self.p["guests"], self.p["private"], kernel, libs, zero)

    @staticmethod
    def _measure(n, private, kernel, libs, zero) -> guests.Measurement:
        image = guests.GuestImage(kernel=kernel, libs=libs, zero=zero, private=private)
        return guests.measure(n, "identical, KASLR", image)

    def simulate(self):
        # the simulator, not a formula, checks the book's solution: all free memory
        k = self.p["min_kernel"]
        image = (k, 0, self.p["shared"] - k)
        r = self.measure(*image)
        if r.saved_percent < self.p["target"]:
            raise ValueError(f"target {self.p['target']}% is out of reach")
        return {"answer": image, "saved": r.saved_percent}

    def explain(self, f):
        return (f"For example {f['answer']}: {f['saved']:.1f}% saved. The most free memory "
                f"and the smallest kernel save the most; other images are accepted when the "
                f"simulator agrees.")

    def check(self, answer=None) -> Feedback:
        if answer is None or answer is Ellipsis:
            return super().check(answer)
        try:
            kernel, libs, zero = self.normalise(answer)
        except (TypeError, ValueError) as exc:
            return Feedback(False, f"Could not read {answer!r} as {self.answer_format}: {exc}")
        if kernel + libs + zero != self.p["shared"]:
            return Feedback(False, f"Not quite: {kernel} + {libs} + {zero} = "
                                   f"{kernel + libs + zero}, not {self.p['shared']} pages.")
        if kernel < self.p["min_kernel"]:
            return Feedback(False, f"Not quite: a guest needs at least {self.p['min_kernel']} "
                                   f"kernel pages.")
        r = self.measure(kernel, libs, zero)
        saw = (f"The simulator built {self.p['guests']} guests with KASLR from ({kernel}, "
               f"{libs}, {zero}): {r.saved_percent:.1f}% saved (kernel {r.saved['kernel']}, "
               f"libs {r.saved['libs']}, zero {r.saved['zero']} frames).")
        if r.saved_percent >= self.p["target"]:
            return Feedback(True, "Correct. " + saw)
        return Feedback(False, f"Not quite. {saw} You need {self.p['target']}%. Try `hint()`.")


one_guest = OneGuest()
kaslr_loss = KaslrLoss()
distro_guests = DistroGuests()
most_saved = MostSaved()
cow_breaks = CowBreaks()
image_design = ImageDesign()
EXERCISES = (one_guest, kaslr_loss, distro_guests, most_saved, cow_breaks, image_design)
