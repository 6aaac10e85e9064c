"""Informal writing edits: the vocabulary of "writing quirks" that a user's history reveals.

A :class:`StyleRule` rewrites formal wording into an informal form ("you" -> "u", "I am" -> "I'm").
:func:`style_profile` measures, from a user's own texts, how often they use each rule's informal side
rather than its formal side; :func:`apply_rules` rewrites a text with a set of rules. The synthetic
generator plants quirks from this same table, and HYDRA's candidate pool for rewrite tasks includes the
input edited with the rules that the shared base's style model chooses from the user's own counts
(:mod:`shared.hydra.style_model`, :mod:`shared.hydra.candidates`).

Example:
    >>> apply_rules("I am going to see you tomorrow", ["contractions", "u"])
    "I'm gonna see u tomorrow"
    >>> round(style_profile(["u rock", "see u", "you too"])["u"], 2)
    0.62
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "StyleRule",
    "STYLE_RULES",
    "RULE_NAMES",
    "apply_rules",
    "style_profile",
    "rule_counts",
    "favoured_rules",
    "signature",
    "EMOTICON",
    "StyleHabits",
]


class _Pattern(str):
    """A rule's formal side that is a regular expression, not a literal phrase."""


_GOING_TO = _Pattern(
    r"going to(?! (?:the|a|an|my|your|his|her|our|their|this|that|bed|school|work|church|class|"
    r"town|college|uni|hospital|dinner|lunch|breakfast|practice|gym|mall|beach|sleep in|(?-i:[A-Z0-9])))"
)
"""'going to' before a verb only: "going to the beach" does not become "gonna the beach"."""

_I_HAVE = _Pattern(r"I have(?= (?:been|got|gotten|had|seen|done|made|never|always|just|already|ever|\w+ed)\b)")
"""'I have' as an auxiliary only: "I have a question" does not become "I've a question"."""

_HAVE_TO = _Pattern(r"(?<!nna )(?<!to )(?<!ll )(?<!uld )(?<!ght )(?<!may )(?<!must )have to")
"""'have to' where no modal or 'going to' comes before it: "gonna have to" does not become "gonna gotta"."""


def _before_word(phrase: str) -> _Pattern:
    """``phrase`` where a word follows it: a subject and its verb contract only then ("Here you are." does not
    become "Here you're.", nor "how widespread it is." "how widespread it's.")."""
    return _Pattern(rf"{re.escape(phrase)}(?=\s+[\w@#])")


def _regex(phrase: str) -> str:
    return phrase if isinstance(phrase, _Pattern) else re.escape(phrase)


@dataclass(frozen=True)
class StyleRule:
    """Pairs of (formal, informal) phrases, matched as whole words, case-insensitively."""

    name: str
    pairs: tuple[tuple[str, str], ...]

    def apply(self, text: str) -> str:
        """``text`` with every formal phrase replaced by its informal side; a capital first letter stays capital
        ("They are" -> "They're", "It's" -> "Its"), except on a one-letter form ("You" -> "u")."""
        for formal, informal in self.pairs:
            text = re.sub(rf"(?<![\w']){_regex(formal)}(?![\w'])", _replacer(informal), text, flags=re.I)
        return text

    def counts(self, text: str) -> tuple[int, int]:
        """(formal uses, informal uses) in ``text``."""
        formal = sum(len(re.findall(rf"(?<![\w']){_regex(f)}(?![\w'])", text, re.I)) for f, _ in self.pairs)
        informal = sum(len(re.findall(rf"(?<![\w']){re.escape(i)}(?![\w'])", text, re.I)) for _, i in self.pairs)
        return formal, informal


def _replacer(informal: str) -> Callable[[re.Match[str]], str]:
    return lambda m: _same_case(m.group(0), informal)


def _same_case(matched: str, informal: str) -> str:
    pronoun = matched[:1] == "I" and matched[1:2] in ("", " ", "'")  # "I'm" -> "im": "I" is no sentence's capital
    if matched[:1].isupper() and informal[:1].islower() and len(informal) > 1 and not matched.isupper() and not pronoun:
        return informal[0].upper() + informal[1:]
    return informal


STYLE_RULES: tuple[StyleRule, ...] = (
    StyleRule(
        "contractions",
        (
            (_before_word("I am"), "I'm"),
            ("do not", "don't"),
            ("does not", "doesn't"),
            ("did not", "didn't"),
            ("cannot", "can't"),
            ("can not", "can't"),
            ("will not", "won't"),
            ("is not", "isn't"),
            ("are not", "aren't"),
            (_before_word("it is"), "it's"),
            (_before_word("that is"), "that's"),
            (_before_word("I will"), "I'll"),
            (_I_HAVE, "I've"),
            (_before_word("you are"), "you're"),
            (_before_word("we are"), "we're"),
            (_before_word("they are"), "they're"),
            (_GOING_TO, "gonna"),
            ("want to", "wanna"),
            (_HAVE_TO, "gotta"),
        ),
    ),
    StyleRule(
        "no-apostrophe",
        (
            ("I'm", "im"),
            ("don't", "dont"),
            ("can't", "cant"),
            ("won't", "wont"),
            ("it's", "its"),
            ("that's", "thats"),
            ("didn't", "didnt"),
            ("isn't", "isnt"),
        ),
    ),
    # phrases whose words later rules rewrite come before those rules ("to be honest" before "to" -> "2")
    StyleRule("y'all", (("you all", "y'all"), ("you guys", "y'all"))),
    StyleRule("tbh", (("to be honest", "tbh"),)),
    StyleRule("imo", (("in my opinion", "imo"),)),
    StyleRule("rn", (("right now", "rn"),)),
    StyleRule("np", (("no problem", "np"),)),
    StyleRule("lemme", (("let me", "lemme"),)),
    StyleRule("gimme", (("give me", "gimme"),)),
    StyleRule("outta", (("out of", "outta"),)),
    StyleRule("u", (("you", "u"),)),
    StyleRule("ur", (("your", "ur"), ("you're", "ur"))),
    StyleRule("r", (("are", "r"),)),
    StyleRule("2", (("to", "2"), ("too", "2"))),
    StyleRule("4", (("for", "4"),)),
    StyleRule("cuz", (("because", "cuz"),)),
    StyleRule("luv", (("love", "luv"),)),
    StyleRule("pls", (("please", "pls"),)),
    StyleRule("tmrw", (("tomorrow", "tmrw"),)),
    StyleRule("thx", (("thank you", "thx"), ("thanks", "thx"))),
    StyleRule("ppl", (("people", "ppl"),)),
    StyleRule("b4", (("before", "b4"),)),
    StyleRule("tho", (("though", "tho"), ("although", "tho"))),
    StyleRule("thru", (("through", "thru"),)),
    StyleRule("nite", (("tonight", "tonite"), ("night", "nite"))),
    StyleRule("bday", (("birthday", "bday"),)),
    StyleRule("kinda", (("kind of", "kinda"), ("sort of", "sorta"))),
    StyleRule("idk", (("I don't know", "idk"), ("I dont know", "idk"), ("I do not know", "idk"))),
    StyleRule("btw", (("by the way", "btw"),)),
    StyleRule("omg", (("oh my god", "omg"), ("oh my gosh", "omg"))),
    StyleRule("ya", (("yes", "ya"), ("yeah", "ya"))),
    StyleRule("n", (("and", "n"),)),
    StyleRule("&", (("and", "&"),)),
    StyleRule("w/", (("with", "w/"),)),
    StyleRule("abt", (("about", "abt"),)),
    StyleRule("rly", (("really", "rly"),)),
    StyleRule("wat", (("what", "wat"),)),
    StyleRule("wut", (("what", "wut"),)),
    StyleRule("ok", (("okay", "ok"),)),
    StyleRule("gud", (("good", "gud"),)),
    StyleRule("lil", (("little", "lil"),)),
    StyleRule("sth", (("something", "sth"),)),
    StyleRule("prob", (("probably", "prob"),)),
    StyleRule("prolly", (("probably", "prolly"),)),
    StyleRule("tmr", (("tomorrow", "tmr"),)),
    StyleRule("2day", (("today", "2day"),)),
    StyleRule("c", (("see", "c"),)),
    StyleRule("b", (("be", "b"),)),
    StyleRule("y", (("why", "y"),)),
    StyleRule("bc", (("because", "bc"),)),
    StyleRule("til", (("until", "til"),)),
    StyleRule("wen", (("when", "wen"),)),
    StyleRule("gr8", (("great", "gr8"),)),
    StyleRule("l8r", (("later", "l8r"),)),
    StyleRule("srsly", (("seriously", "srsly"),)),
    StyleRule("def", (("definitely", "def"),)),
    StyleRule("obv", (("obviously", "obv"),)),
    StyleRule("fav", (("favorite", "fav"), ("favourite", "fav"))),
    StyleRule("pic", (("pictures", "pics"), ("picture", "pic"), ("photos", "pics"), ("photo", "pic"))),
    StyleRule("vid", (("videos", "vids"), ("video", "vid"))),
    StyleRule("bf", (("boyfriend", "bf"), ("girlfriend", "gf"))),
    StyleRule("convo", (("conversation", "convo"),)),
    StyleRule("info", (("information", "info"),)),
    StyleRule("msg", (("message", "msg"),)),
    StyleRule("mins", (("minutes", "mins"), ("hours", "hrs"))),
    StyleRule("yea", (("yeah", "yea"),)),
    StyleRule(
        "g-drop",
        (
            ("going", "goin"),
            ("doing", "doin"),
            ("nothing", "nothin"),
            ("something", "somethin"),
            ("getting", "gettin"),
            ("trying", "tryin"),
            ("coming", "comin"),
            ("looking", "lookin"),
            ("watching", "watchin"),
            ("talking", "talkin"),
            ("thinking", "thinkin"),
            ("waiting", "waitin"),
        ),
    ),
)
"""The catalogue of informal rewrites, written by hand (nothing mined from users): each keeps the meaning of the
words it replaces, matches whole words only and deletes none. Applied in this order, so a phrase ("to be honest")
is rewritten before the rules that rewrite its words ("to" -> "2"), and "I am" -> "I'm" -> "im" chains. Which rules
a user's text gets is decided by the learned style model of the shared base (:mod:`shared.hydra.style_model`) on
the device, and by a plain majority of the user's history in the ``style-rules`` baseline (:class:`StyleHabits`)."""
RULE_NAMES = tuple(rule.name for rule in STYLE_RULES)
_BY_NAME = {rule.name: rule for rule in STYLE_RULES}


def apply_rules(text: str, names: Iterable[str]) -> str:
    """Apply the named rules in table order (so "I am" -> "I'm" -> "im" chains)."""
    wanted = set(names)
    for rule in STYLE_RULES:
        if rule.name in wanted:
            text = rule.apply(text)
    return text


def rule_counts(texts: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Per rule of :data:`STYLE_RULES`, in table order, (formal uses, informal uses) over ``texts``.

    >>> rule_counts(["see u", "you too"])[RULE_NAMES.index("u")]
    (1, 1)
    """
    joined = "\n".join(texts)
    return tuple(rule.counts(joined) for rule in STYLE_RULES)


def style_profile(texts: Sequence[str], prior: float = 1.0) -> dict[str, float]:
    """Per rule, the smoothed share of informal uses: (informal + prior/2) / (formal + informal + prior)."""
    return {
        name: (informal + prior / 2) / (formal + informal + prior)
        for name, (formal, informal) in zip(RULE_NAMES, rule_counts(texts))
    }


def favoured_rules(profile: Mapping[str, float], threshold: float = 0.5) -> list[str]:
    """The rules a user uses more often than not."""
    return [name for name in RULE_NAMES if profile.get(name, 0.0) > threshold]


def signature(texts: Sequence[str], *, min_share: float = 0.3, min_count: int = 3) -> str | None:
    """The word a user ends their texts with ("lol", "xoxo"), if at least ``min_share`` of them do.

    >>> signature(["so fun lol", "ok lol", "bye lol", "hi there"])
    'lol'
    >>> signature(["tell me", "call me", "text me"]) is None
    True
    >>> signature(["so fun :)", "ok :D", "bye :)", "yay <3", "hi :D", "hm"])  # emoticons by turns: the usual one
    ':D'
    """
    ends = [t.split()[-1] for t in texts if t.split()]
    if not ends:
        return None
    word, count = max(((w, ends.count(w)) for w in set(ends)), key=lambda x: (x[1], x[0]))
    if word.lower().strip(".,!?") in _NOT_SIGN_OFFS:  # "... please reply me": an object, not a sign-off
        return None
    if count >= min_count and count / len(ends) >= min_share:
        return word
    faces = [e for e in ends if EMOTICON.match(e)]  # ":)", ":D", "<3" by turns: an emoticon sign-off, the usual one
    if len(faces) >= min_count and len(faces) / len(ends) >= min_share:
        return max(set(faces), key=lambda f: (faces.count(f), f))
    return None


EMOTICON = re.compile(
    r"^(?:[:;=xX8][-o']?[)(DPpOo3\]\[/\\|*]+|[)(]+[-']?[:;=]|<3+|\^_*\^|[\U0001F300-\U0001FAFF\u2600-\u27BF]+)$"
)
"""A whitespace token that is an emoticon (":)", ";-P", "<3", "^_^") or a run of emoji."""


_NOT_SIGN_OFFS = frozenset(
    [
        "me",
        "you",
        "u",
        "it",
        "that",
        "this",
        "to",
        "too",
        "now",
        "today",
        "tonight",
        "here",
        "there",
        "them",
        "him",
        "her",
        "us",
        "all",
        "again",
    ]
)
"""Words that often end a text without signing it."""


_FIRST_LETTER = re.compile(r"\s*(?:[@#]\S+\s+)*[^A-Za-z@#]*([A-Za-z])")


def _signed(text: str, signature: str) -> bool:
    """Whether ``text`` already ends on ``signature`` among its last three words, quotes and punctuation aside
    ('"a whole day offline! #fb"' is signed "#fb": no second one).

    >>> _signed('"a day offline! #fb"', "#fb"), _signed("so fun lol!", "lol"), _signed("lol what", "xx")
    (True, True, False)
    """
    want = signature.lower().strip("\"'.,!?")
    return want in [w.lower().strip("\"'.,!?") for w in text.split()[-3:]]


_NAME_START = re.compile(r"[A-Z][\w'-]*,?\s+(?!I\b)[A-Z]")
"""A first word followed by another capitalized one: a name ("Jordan Knight"), whose case a lowercase habit keeps."""


def _starts_lower(text: str) -> bool | None:
    """Whether the first word that is no @mention or #tag starts lowercase (None: no letter)."""
    m = _FIRST_LETTER.match(text.strip())
    return None if m is None else m.group(1).islower()


@dataclass(frozen=True)
class StyleHabits:
    """How a user writes, from their own texts: the rules they favour, whether they start lowercase, whether they
    end on a period, and their sign-off. :meth:`apply` writes a text their way, keeping every word's meaning:
    no word is deleted. :meth:`of` takes each habit by a plain majority of the user's texts: the ``style-rules``
    baseline (no model). HYDRA keeps the case, period and sign-off habits and takes its ``rules`` from the learned
    style model of the shared base instead (:class:`shared.hydra.style_model.StyleModel`).

    >>> habits = StyleHabits.of(["going 2 bed now", "u r great", "see u there", "ok then"])
    >>> habits.rules, habits.lower_first, habits.drop_period
    (('u', 'r', '2', 'ok'), True, True)
    >>> habits.apply("I will see you at 2. You are great.")
    'I will see u at 2. u r great'
    >>> habits.apply("Great game tonight."), habits.apply("Jordan Knight sang tonight.")  # a name keeps its case
    ('great game tonight', 'Jordan Knight sang tonight')
    """

    rules: tuple[str, ...] = ()
    lower_first: bool = False
    drop_period: bool = False
    signature: str | None = None

    @classmethod
    def of(cls, texts: Sequence[str]) -> StyleHabits:
        """The habits of a user's own ``texts`` (each a majority over them; none without texts)."""
        texts = [t for t in texts if t.strip()]
        starts = [s for s in (_starts_lower(t) for t in texts) if s is not None]
        ends = [t.rstrip()[-1] for t in texts]
        rules = favoured_rules(style_profile(texts)) if texts else []
        if "no-apostrophe" in rules and "contractions" not in rules:  # "im" writers contract "I am" too
            rules.insert(0, "contractions")
        return cls(
            rules=tuple(rules),
            lower_first=bool(starts) and sum(starts) / len(starts) > 0.5,
            drop_period=bool(ends) and sum(e == "." for e in ends) / len(ends) < 0.2,
            signature=signature(texts) if texts else None,
        )

    def apply(self, text: str, *, sign: bool = False) -> str:
        """``text`` with the user's rules, first-letter case and final period (and sign-off, with ``sign``)."""
        out = apply_rules(text, self.rules)
        if self.lower_first:
            m = _FIRST_LETTER.match(out)
            if (
                m is not None
                and not out[m.start(1) :].startswith(("I ", "I'"))
                and not _NAME_START.match(out, m.start(1))
            ):
                i = m.start(1)
                out = out[:i] + out[i].lower() + out[i + 1 :]
        if self.drop_period and out.rstrip().endswith(".") and not out.rstrip().endswith(".."):
            out = out.rstrip()[:-1]
        if sign and self.signature and not _signed(out, self.signature):
            out = f"{out.rstrip()} {self.signature}"
        return out
