"""Digit patterns of libphonenumber's metadata as automata, to tell when a prefix decides a match.

libphonenumber classifies a number with regular expressions over its digits (`7(?:[1-3]\\d\\d|...)\\d{6}`).
For bulk imports we want to call phonenumbers once per *prefix* rather than once per number, which
is only sound when no pattern can tell two numbers of that prefix apart. `DigitPattern.decided()`
answers exactly that: given the first digits and how many digits follow, does the pattern match
all completions, none of them, or does it depend on the rest? The answer comes from a Thompson
automaton of the pattern, not from sampling, so the prefix cache never changes a verdict.

Only the syntax the metadata uses is understood (digits, `\\d`, classes, groups, `|`, `?`, `*`,
`+`, `{m,n}`); anything else raises `Unsupported` and the caller falls back to per-number calls.
"""

from __future__ import annotations

from functools import lru_cache

_ALL_DIGITS = (1 << 10) - 1
# Longest remaining length we reason about: national numbers are at most 17 digits.
_MAX_REST = 24


class Unsupported(ValueError):
    """The pattern uses syntax outside the digit subset."""


# --- parsing into a tiny AST: ("chars", mask) | ("seq", [..]) | ("alt", [..]) | ("rep", node, lo, hi)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> tuple:
        node = self._alt()
        if self.pos != len(self.text):
            raise Unsupported(f"unexpected {self.text[self.pos]!r} at {self.pos} in {self.text!r}")
        return node

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _alt(self) -> tuple:
        branches = [self._seq()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self._seq())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def _seq(self) -> tuple:
        items = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return ("seq", items)

    def _atom(self) -> tuple:
        c = self._peek()
        self.pos += 1
        if c == "(":
            if self.text.startswith("?:", self.pos):
                self.pos += 2
            elif self._peek() == "?":
                raise Unsupported(f"group syntax in {self.text!r}")
            node = self._alt()
            if self._peek() != ")":
                raise Unsupported(f"unbalanced group in {self.text!r}")
            self.pos += 1
            return node
        if c == "[":
            return ("chars", self._class())
        if c == "\\":
            escaped = self._peek()
            self.pos += 1
            if escaped == "d":
                return ("chars", _ALL_DIGITS)
            raise Unsupported(f"escape \\{escaped} in {self.text!r}")
        if c.isascii() and c.isdigit():
            return ("chars", 1 << int(c))
        raise Unsupported(f"{c!r} in {self.text!r}")

    def _class(self) -> int:
        mask = 0
        if self._peek() == "^":
            raise Unsupported(f"negated class in {self.text!r}")
        while True:
            c = self._peek()
            self.pos += 1
            if c == "]":
                return mask
            if c == "\\" and self._peek() == "d":
                self.pos += 1
                mask |= _ALL_DIGITS
                continue
            if not (c.isascii() and c.isdigit()):
                raise Unsupported(f"class member {c!r} in {self.text!r}")
            if self._peek() == "-" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] != "]":
                high = self.text[self.pos + 1]
                self.pos += 2
                if not (high.isascii() and high.isdigit()):
                    raise Unsupported(f"range to {high!r} in {self.text!r}")
                for d in range(int(c), int(high) + 1):
                    mask |= 1 << d
            else:
                mask |= 1 << int(c)

    def _quantified(self, node: tuple) -> tuple:
        c = self._peek()
        if c == "?":
            lo, hi = 0, 1
        elif c == "*":
            lo, hi = 0, None
        elif c == "+":
            lo, hi = 1, None
        elif c == "{":
            end = self.text.index("}", self.pos)
            body = self.text[self.pos + 1 : end]
            low_text, _, high_text = body.partition(",")
            lo = int(low_text)
            hi = lo if "," not in body else (int(high_text) if high_text else None)
            self.pos = end
        else:
            return node
        self.pos += 1
        if self._peek() in ("?", "+"):
            raise Unsupported(f"lazy or possessive quantifier in {self.text!r}")
        return ("rep", node, lo, hi)


def _width(node: tuple) -> tuple[int, int | None]:
    kind = node[0]
    if kind == "chars":
        return 1, 1
    if kind == "seq":
        lo = 0
        hi_or_none: int | None = 0
        for item in node[1]:
            a, b = _width(item)
            lo += a
            hi_or_none = None if hi_or_none is None or b is None else hi_or_none + b
        return lo, hi_or_none
    if kind == "alt":
        widths = [_width(b) for b in node[1]]
        his = [b for _, b in widths]
        return min(a for a, _ in widths), None if None in his else max(h for h in his if h is not None)
    inner_lo, inner_hi = _width(node[1])
    lo, hi = node[2], node[3]
    return inner_lo * lo, None if hi is None or inner_hi is None else inner_hi * hi


# --- the automaton


class _Nfa:
    def __init__(self) -> None:
        self.edges: list[list[tuple[int, int]]] = []  # state -> [(digit mask, target)]
        self.eps: list[list[int]] = []

    def state(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def build(self, node: tuple, start: int, end: int) -> None:
        kind = node[0]
        if kind == "chars":
            self.edges[start].append((node[1], end))
        elif kind == "seq":
            here = start
            for item in node[1]:
                nxt = self.state()
                self.build(item, here, nxt)
                here = nxt
            self.eps[here].append(end)
        elif kind == "alt":
            for branch in node[1]:
                self.build(branch, start, end)
        else:
            inner, lo, hi = node[1], node[2], node[3]
            here = start
            for _ in range(lo):
                nxt = self.state()
                self.build(inner, here, nxt)
                here = nxt
            if hi is None:
                loop = self.state()
                self.eps[here].append(loop)
                back = self.state()
                self.build(inner, loop, back)
                self.eps[back].append(loop)
                self.eps[loop].append(end)
            else:
                for _ in range(hi - lo):
                    self.eps[here].append(end)
                    nxt = self.state()
                    self.build(inner, here, nxt)
                    here = nxt
                self.eps[here].append(end)


class DigitPattern:
    """One metadata pattern over digits, with exact answers about prefixes."""

    def __init__(self, pattern: str) -> None:
        node = _Parser(pattern).parse()
        self.pattern = pattern
        self.width = _width(node)[1]
        nfa = _Nfa()
        start, self._accept = nfa.state(), nfa.state()
        nfa.build(node, start, self._accept)
        self._edges = nfa.edges
        self._eps = nfa.eps
        self._start = self._close(frozenset((start,)))
        self._steps: dict[tuple[frozenset[int], int], frozenset[int]] = {}
        self._after: dict[str, frozenset[int]] = {"": self._start}
        self._verdicts: dict[tuple[frozenset[int], int], bool | None] = {}

    def _close(self, states: frozenset[int]) -> frozenset[int]:
        seen = set(states)
        todo = list(states)
        while todo:
            for nxt in self._eps[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return frozenset(seen)

    def _step(self, states: frozenset[int], digit: int) -> frozenset[int]:
        key = (states, digit)
        found = self._steps.get(key)
        if found is None:
            bit = 1 << digit
            found = self._close(frozenset(t for s in states for mask, t in self._edges[s] if mask & bit))
            self._steps[key] = found
        return found

    def _states_after(self, head: str) -> frozenset[int]:
        found = self._after.get(head)
        if found is None:
            found = self._step(self._states_after(head[:-1]), ord(head[-1]) - 48)
            if len(self._after) > 200_000:
                self._after.clear()
                self._after[""] = self._start
            self._after[head] = found
        return found

    def _decide(self, states: frozenset[int], rest: int) -> bool | None:
        if not states:
            return False
        if rest == 0:
            return self._accept in states
        key = (states, rest)
        if key in self._verdicts:
            return self._verdicts[key]
        verdict: bool | None = self._decide(self._step(states, 0), rest - 1)
        if verdict is not None:
            for digit in range(1, 10):
                if self._decide(self._step(states, digit), rest - 1) is not verdict:
                    verdict = None
                    break
        self._verdicts[key] = verdict
        return verdict

    def decided(self, head: str, rest: int) -> bool | None:
        """Return whether `head` + any `rest` digits fully matches (True/False), or None if it depends."""
        if rest > _MAX_REST:
            return None
        return self._decide(self._states_after(head), rest)

    def decides_match(self, head: str) -> bool:
        """Tell whether re.match() at the start, and the digit after its end, lie within `head`.

        True when no path of the pattern can consume all of `head`: every attempt, successful or
        not, then stops inside it, whatever digits follow.
        """
        if self.width is not None and self.width < len(head):
            return True
        return not self._states_after(head)


@lru_cache(maxsize=4096)
def compile_digits(pattern: str) -> DigitPattern:
    """Return the automaton of a metadata pattern (cached); raise Unsupported outside the subset."""
    return DigitPattern(pattern)
