"""A word-level diff of two candidate responses, to show the annotator where they differ.

The texts are split into words, punctuation marks and the whitespace that follows each; only the
words and punctuation are compared (difflib.SequenceMatcher, line by line and then word by word
within the lines that differ), so spacing alone is not a difference. Every character of each
text is kept, in order, in its segments: joined again they give the text back (after NFC
normalization, which changes no visible character).
"""

import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import islice

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Above this many words and punctuation marks (both texts together) no diff is computed, and the
# page says so: the page is rendered on every judgment.
MAX_TOKENS = 20_000
# How many (left word, right word) pairs the word-by-word pass may weigh in all; a changed block
# of lines past what is left of it is marked whole. This much takes 0.1 to 0.25 s on one core.
WORD_PAIRS_BUDGET = 12_000_000

# Han, kana and Hangul are written without spaces: each character is a word of its own there,
# or a changed character would mark a whole sentence. Each punctuation mark is a token too, so
# that "so</b>." and "mostly." still share their full stop.
_UNSPACED = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"([{_UNSPACED}]|(?:(?![{_UNSPACED}])\w)+|[^\w\s])(\s*)")
_LEADING_SPACE = re.compile(r"\s*")


# ASCII marks that are tokens of their own ("_" is a word character), and what turns them (and the
# separators \x1c-\x1f, which are whitespace to the regex) into spaces.
_ASCII_MARKS = string.punctuation.replace("_", "").encode()
_MARKS_TO_SPACE = bytes.maketrans(
    _ASCII_MARKS + bytes(range(0x1C, 0x20)), b" " * (len(_ASCII_MARKS) + 4)
)


def _at_least_tokens(text: str) -> int:
    """A lower bound of the number of tokens of `text`, counted in a few passes at C speed.

    Every ASCII punctuation mark is a token; so is at least one character of each run between
    whitespace and marks (a word, or a mark of another script). A text whose bound is past the
    cap is too long without splitting it: the page pays nothing for a long response.
    """
    data = text.encode("utf-8", "surrogatepass")
    marks = len(data) - len(data.translate(None, _ASCII_MARKS))
    if text.isascii():
        return marks + len(data.translate(_MARKS_TO_SPACE).split())
    return max(marks, len(text.split()))


@dataclass(frozen=True)
class Segment:
    text: str
    only_here: bool  # not in the other text


@dataclass(frozen=True)
class WordDiff:
    left: list[Segment]
    right: list[Segment]
    too_long: bool = False


def _tokens(text: str, limit: int | None = None) -> tuple[str, list[tuple[str, str]]]:
    """(leading whitespace, [(word, the whitespace after it), ...]) covering all of `text`, or
    its first `limit` tokens only: a text past the cap is not split further than that."""
    leading = _LEADING_SPACE.match(text)
    start = leading.end() if leading else 0
    matches = islice(_TOKEN.finditer(text, start), limit)
    return text[:start], [(match.group(1), match.group(2)) for match in matches]


def _segments(
    leading: str, tokens: list[tuple[str, str]], changed: list[tuple[int, int]]
) -> list[Segment]:
    """Segments of one side: the runs `changed` (token index ranges) are marked.

    A marked run takes in the whitespace between its words but not the whitespace after its
    last word, so a mark never starts or ends in blank space.
    """
    segments: list[Segment] = []

    def add(text: str, only_here: bool) -> None:
        if not text:
            return
        if segments and segments[-1].only_here == only_here:
            segments[-1] = Segment(segments[-1].text + text, only_here)
        else:
            segments.append(Segment(text, only_here))

    add(leading, False)
    position = 0
    for start, end in changed:
        add("".join(word + space for word, space in tokens[position:start]), False)
        run = tokens[start:end]
        add("".join(word + space for word, space in run[:-1]) + run[-1][0], True)
        add(run[-1][1], False)
        position = end
    add("".join(word + space for word, space in tokens[position:]), False)
    return segments


def _lines(tokens: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """Token index ranges of the lines: a line ends with a token followed by a line break."""
    lines, start = [], 0
    for index, (_, space) in enumerate(tokens):
        if "\n" in space:
            lines.append((start, index + 1))
            start = index + 1
    if start < len(tokens):
        lines.append((start, len(tokens)))
    return lines


def _changes(
    left: list[tuple[str, str]], right: list[tuple[str, str]]
) -> Iterator[tuple[int, int, int, int]]:
    """(i1, i2, j1, j2) for each run of tokens left[i1:i2] that stands where right[j1:j2] does.

    Lines first, then words within the lines that differ. Responses keep most of their lines
    whole (Markdown writes a paragraph on one line), so the first pass is quick and anchors the
    second, whose cost grows with the product of the lengths it compares. difflib's autojunk is
    off in both: it would skip words as common as "the" in texts of 200 words or more, and then
    mark whole sentences for one changed word.
    """
    left_words, right_words = [word for word, _ in left], [word for word, _ in right]
    left_lines, right_lines = _lines(left), _lines(right)
    by_line = SequenceMatcher(
        None,
        [tuple(left_words[start:end]) for start, end in left_lines],
        [tuple(right_words[start:end]) for start, end in right_lines],
        autojunk=False,
    )
    budget = WORD_PAIRS_BUDGET
    for tag, l1, l2, r1, r2 in by_line.get_opcodes():
        if tag == "equal":
            continue
        i1, i2 = (left_lines[l1][0], left_lines[l2 - 1][1]) if l1 < l2 else _at(left_lines, l1)
        j1, j2 = (right_lines[r1][0], right_lines[r2 - 1][1]) if r1 < r2 else _at(right_lines, r1)
        pairs = (i2 - i1) * (j2 - j1)
        if tag != "replace" or pairs > budget:
            yield i1, i2, j1, j2
            continue
        budget -= pairs
        by_word = SequenceMatcher(None, left_words[i1:i2], right_words[j1:j2], autojunk=False)
        for word_tag, k1, k2, m1, m2 in by_word.get_opcodes():
            if word_tag != "equal":
                yield i1 + k1, i1 + k2, j1 + m1, j1 + m2


def _at(lines: list[tuple[int, int]], line: int) -> tuple[int, int]:
    """The empty token range where line number `line` starts (or the end of the text)."""
    position = lines[line][0] if line < len(lines) else (lines[-1][1] if lines else 0)
    return position, position


def word_diff(left: str, right: str, *, max_tokens: int = MAX_TOKENS) -> WordDiff:
    """The words only in `left` and the words only in `right`, each marked in its own text.

    Past `max_tokens` words and punctuation marks in all, nothing is compared: the texts come back
    whole and unmarked, with `too_long` set.
    """
    left, right = unicodedata.normalize("NFC", left), unicodedata.normalize("NFC", right)
    if _at_least_tokens(left) + _at_least_tokens(right) > max_tokens:
        return WordDiff([Segment(left, False)], [Segment(right, False)], too_long=True)
    # Each side is split only as far as the cap needs: one token past it says "too long".
    left_leading, left_tokens = _tokens(left, max_tokens + 1)
    right_leading, right_tokens = _tokens(right, max(max_tokens + 1 - len(left_tokens), 1))
    if len(left_tokens) + len(right_tokens) > max_tokens:
        return WordDiff([Segment(left, False)], [Segment(right, False)], too_long=True)

    only_left: list[tuple[int, int]] = []
    only_right: list[tuple[int, int]] = []
    for i1, i2, j1, j2 in _changes(left_tokens, right_tokens):
        if i1 < i2:
            only_left.append((i1, i2))
        if j1 < j2:
            only_right.append((j1, j2))
    return WordDiff(
        left=_segments(left_leading, left_tokens, only_left),
        right=_segments(right_leading, right_tokens, only_right),
    )


def marked(segments: list[Segment], side: str) -> SafeString:
    """A side of the diff as escaped text, its own words in `<mark class="only-<side>">`."""
    css_class = "only-left" if side == "left" else "only-right"
    # Every piece of the untrusted text goes through escape(); the only markup is our <mark>.
    return mark_safe(
        "".join(
            f'<mark class="{css_class}">{escape(segment.text)}</mark>'
            if segment.only_here
            else escape(segment.text)
            for segment in segments
        )
    )
