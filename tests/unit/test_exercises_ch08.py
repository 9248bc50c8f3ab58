"""Chapter 08's design exercise: the checker builds the host from the reader's guest image."""
from ksmbook.exercises import ch08


def test_image_design_accepts_what_the_simulator_accepts():
    ex = ch08.ImageDesign()
    assert ex.expected() == (32, 0, 384) and ex.check(ex.expected()).correct is True
    book = ex.check((96, 160, 160))            # the chapter's image: 58.5% with KASLR
    assert book.correct is False and "58.5%" in book.text
    libs = ex.check((32, 384, 0))              # libraries save 7 of 8, not enough
    assert libs.correct is False and "libs 2688" in libs.text
    assert ex.check((32, 100, 100)).correct is False          # does not add up to 416
    assert "at least 32 kernel" in ex.check((0, 0, 416)).text
    assert ex.check("big").correct is False


def test_image_design_target_comes_from_params():
    easy = ch08.ImageDesign(target=55)
    assert easy.check((96, 160, 160)).correct is True
    assert "55%" in easy.question
