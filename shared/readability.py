"""Whether a rewrite of an input is a sentence its writer could have sent, or a broken one.

ROUGE rewards deleting words, and an editor that deletes words to please it writes "My is and now we can print
Haha, cool!". This check says *broken* when a rewrite of an input

- deletes words of the input that grammar needs (``deleted``): the rewrite is the input with some words taken out,
  and a word taken out is not a filler (:data:`DROPPABLE`: "just", "really", "lol", an @mention or #tag), not part
  of a whole sentence taken out, and not a sentence's opening subject ("I am", "it is"). Style edits do not count
  as deletions: both texts are compared in one canonical spelling ("u" -> "you", "im" -> "i am", "gonna" ->
  "going to", :data:`CANONICAL`), without case or punctuation;
- ends on a word a sentence cannot end on ("the", "and", "my", ...), where the input does not (``dangling``);
- contracts a subject and its verb where a clause ends ("Here you're.", "how widespread it's."), where the input
  does not (``contracted``);
- is empty (``empty``);
- talks about the task instead of being the message: an LLM's "The original tweet is:", "Here's a rephrased
  version:", "A: ..." (``meta``).

A rewrite that shares little with the input (an LLM's paraphrase) is judged by its ending only. Known to err: a
deleted opening phrase that leaves a noun phrase standing alone ("Sending you hugs and kisses" -> "hugs and
kisses") counts as broken; a deleted adjective or a deleted clause that leaves grammar whole is broken for it
unless the words are fillers. Its agreement with 555 hand labels (``docs/labels/``; precision 0.94 and recall 0.81
on broken for the 240 labelled after it was frozen) is in docs/lab-notebook.md. Pure Python: a device runs it on every
candidate, LLM answers included.

Example:
    >>> broken_reason("My is and now we can print Haha, cool!", "My printer is fixed and now we can print. Haha, cool!")
    'deleted'
    >>> broken_reason("im so excited 2 see u tmrw", "I'm so excited to see you tomorrow.") is None
    True
    >>> broken_reason("so tired today lol", "I am really so tired today lol") is None
    True
    >>> broken_reason("I'm going to the", "I'm going to the concert tonight")
    'dangling'
    >>> broken_reason("Here you're, it's a bit untidy", "Here you are, it is a bit untidy.")
    'contracted'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

__all__ = [
    "broken_reason",
    "is_broken",
    "broken_share",
    "canonical_tokens",
    "is_filler",
    "droppable_words",
    "DROPPABLE",
    "CANONICAL",
    "REASONS",
]

REASONS = ("empty", "meta", "deleted", "dangling", "contracted")
"""What :func:`broken_reason` names."""

DROPPABLE = frozenset(
    [
        "just",
        "really",
        "very",
        "actually",
        "literally",
        "totally",
        "quite",
        "pretty",
        "truly",
        "simply",
        "definitely",
        "absolutely",
        "honestly",
        "basically",
        "seriously",
        "super",
        "extremely",
        "incredibly",
        "oh",
        "ah",
        "haha",
        "hahaha",
        "lol",
        "yeah",
        "wow",
        "also",
        "still",
        "even",
        "anyway",
        "maybe",
        "please",
        "now",
    ]
)
"""Filler words whose deletion keeps a sentence whole ("I'm really tired" -> "I'm tired")."""

_OPENING_SUBJECT = frozenset(["i", "am", "it", "is", "we", "are", "that", "this", "there", "you"])
"""Words of a sentence's opening subject and verb, which a tweet may drop ("I am so tired" -> "so tired")."""

_DANGLING = frozenset(
    [
        "the",
        "a",
        "an",
        "my",
        "your",
        "his",
        "her",
        "our",
        "their",
        "and",
        "or",
        "but",
        "of",
        "with",
        "from",
        "at",
        "in",
        "on",
        "for",
        "to",
        "by",
        "as",
        "than",
        "if",
        "because",
        "i",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "will",
        "would",
        "can",
        "could",
        "should",
        "shall",
        "must",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "very",
        "so",
        "into",
        "onto",
        "about",
    ]
)
"""Words a sentence does not end on."""

CANONICAL: dict[str, tuple[str, ...]] = {
    "u": ("you",),
    "ya": ("you",),
    "ur": ("your",),
    "youre": ("you", "are"),
    "you're": ("you", "are"),
    "r": ("are",),
    "2": ("to",),
    "too": ("to",),
    "4": ("for",),
    "cuz": ("because",),
    "coz": ("because",),
    "cause": ("because",),
    "luv": ("love",),
    "pls": ("please",),
    "plz": ("please",),
    "tmrw": ("tomorrow",),
    "tmr": ("tomorrow",),
    "thx": ("thank", "you"),
    "thanx": ("thank", "you"),
    "ppl": ("people",),
    "b4": ("before",),
    "tho": ("though",),
    "thru": ("through",),
    "nite": ("night",),
    "tonite": ("tonight",),
    "2nite": ("tonight",),
    "bday": ("birthday",),
    "n": ("and",),
    "&": ("and",),
    "gonna": ("going", "to"),
    "wanna": ("want", "to"),
    "gotta": ("have", "to"),
    "kinda": ("kind", "of"),
    "im": ("i", "am"),
    "i'm": ("i", "am"),
    "ive": ("i", "have"),
    "i've": ("i", "have"),
    "ill": ("i", "will"),
    "i'll": ("i", "will"),
    "i'd": ("i", "would"),
    "dont": ("do", "not"),
    "don't": ("do", "not"),
    "doesnt": ("does", "not"),
    "doesn't": ("does", "not"),
    "didnt": ("did", "not"),
    "didn't": ("did", "not"),
    "cant": ("can", "not"),
    "can't": ("can", "not"),
    "cannot": ("can", "not"),
    "wont": ("will", "not"),
    "won't": ("will", "not"),
    "isnt": ("is", "not"),
    "isn't": ("is", "not"),
    "arent": ("are", "not"),
    "aren't": ("are", "not"),
    "wasnt": ("was", "not"),
    "wasn't": ("was", "not"),
    "its": ("it", "is"),
    "it's": ("it", "is"),
    "thats": ("that", "is"),
    "that's": ("that", "is"),
    "we're": ("we", "are"),
    "they're": ("they", "are"),
    "there's": ("there", "is"),
    "what's": ("what", "is"),
    "let's": ("let", "us"),
    "lets": ("let", "us"),
    "idk": ("i", "do", "not", "know"),
    "btw": ("by", "the", "way"),
    "omg": ("oh", "my", "god"),
}
"""Informal spellings and contractions, and the words they stand for (both texts are compared in these words)."""

_META = re.compile(
    r"^\W*(?:a:|q:|answer:|the (?:original |rewritten |paraphrased )?tweet\b|to paraphrase\b|"
    r"here(?:'s| is) (?:a|the|my)\b|rephrased\b|paraphrased?\b|rewritten\b|sure[,!]|as an ai\b)|:\s*$",
    re.I,
)
_WORD = re.compile(r"[@#]?[a-z0-9&]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_CLAUSE_END_CONTRACTION = re.compile(
    r"\b(?:i'm|you're|we're|they're|it's|that's|i'll|you'll|we'll|they'll|i've|you've|we've|they've|he's|she's)"
    r"(?=\s*(?:[.,!?;:]|$))",
    re.I,
)
"""A subject and its verb contracted where a clause ends: English contracts them only before more of the clause."""


def _clause_end_contractions(text: str) -> int:
    return len(_CLAUSE_END_CONTRACTION.findall(text.replace("\u2019", "'")))


def canonical_tokens(text: str) -> tuple[list[str], list[int]]:
    """The words of ``text`` in canonical spelling (lowercase, no punctuation, :data:`CANONICAL` expanded), and for
    each the index of its sentence.

    >>> canonical_tokens("Im gonna go. U 2?")
    (['i', 'am', 'going', 'to', 'go', 'you', 'to'], [0, 0, 0, 0, 0, 1, 1])
    """
    tokens: list[str] = []
    sentences: list[int] = []
    start = 0
    parts = []
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start : m.end()])
        start = m.end()
    parts.append(text[start:])
    for s, part in enumerate(p for p in parts if p.strip()):
        for word in _WORD.findall(part.lower().replace("\u2019", "'")):
            for t in CANONICAL.get(word, (word,)):
                tokens.append(t)
                sentences.append(s)
    return tokens, sentences


_NOT_ADVERBS = frozenset(
    [
        "family",
        "reply",
        "supply",
        "july",
        "italy",
        "only",
        "holy",
        "belly",
        "jelly",
        "fly",
        "ally",
        "rally",
        "silly",
        "lovely",
        "ugly",
        "friendly",
        "early",
        "daily",
        "weekly",
        "monthly",
        "yearly",
        "likely",
        "unlikely",
        "lonely",
        "lively",
        "elderly",
        "costly",
        "chilly",
        "curly",
        "smelly",
        "bully",
        "jolly",
    ]
)


def is_filler(token: str) -> bool:
    """Whether deleting this canonical word keeps a sentence whole: a :data:`DROPPABLE` word, an @mention or #tag,
    an -ly adverb.

    >>> [is_filler(t) for t in ("really", "@bob", "unfortunately", "only", "print")]
    [True, True, True, False, False]
    """
    return (
        token in DROPPABLE
        or token[0] in "@#"
        or (token.endswith("ly") and len(token) >= 5 and token not in _NOT_ADVERBS)
    )


PHRASES = frozenset(
    [("right", "now"), ("just", "now"), ("for", "now"), ("by", "now"), ("until", "now"), ("oh", "well")]
)
"""Two words whose second, a filler, does not go alone: dropping it leaves half a phrase ("money right now." ->
"money right")."""

STANDALONE = frozenset(
    [
        "yes",
        "yeah",
        "yep",
        "yup",
        "no",
        "nope",
        "nah",
        "ok",
        "okay",
        "sure",
        "indeed",
        "right",
        "thanks",
        "thx",
        "wow",
        "yay",
        "hi",
        "hello",
        "hey",
        "bye",
        "please",
        "sorry",
        "congrats",
        "cool",
        "great",
        "nice",
        "awesome",
        "lol",
        "haha",
        "hahaha",
        "hehe",
        "omg",
        "damn",
    ]
)
"""Words that make a sentence by themselves: a deletion may leave one of them alone ("Oh no!" -> "no!")."""


def _stands_alone(word: str) -> bool:
    tokens, _ = canonical_tokens(word)
    return len(tokens) == 1 and tokens[0] in STANDALONE


def _inside_sentence(is_word: Sequence[bool], sentences: Sequence[int], i: int, j: int) -> bool:
    """Whether words (``is_word``: no @mention, #tag or bare punctuation) of the sentence of position ``i`` come both
    before ``i`` and from ``j`` on: what lies between is inside the sentence, not at its edge.

    >>> tokens, sentences = canonical_tokens("@amy thanked the #FF guys #fb")
    >>> words = [t[0] not in "@#" for t in tokens]
    >>> _inside_sentence(words, sentences, 3, 4), _inside_sentence(words, sentences, 0, 1)
    (True, False)
    >>> _inside_sentence(words, sentences, 5, 6)  # a trailing tag
    False
    """
    here = sentences[i]
    before = any(sentences[k] == here and is_word[k] for k in range(i))
    after = any(sentences[k] == here and is_word[k] for k in range(j, len(is_word)))
    return before and after


def _droppable_span(tokens: Sequence[str], sentences: Sequence[int], i: int, j: int) -> bool:
    """Whether deleting ``tokens[i:j]`` of the input keeps its sentences whole; a sentence is never cut to one word
    (@mentions and #tags aside) by deleting more than @mentions and #tags, unless that word stands alone
    (:data:`STANDALONE`): "Oh, well." -> "well." is broken, "Oh no!" -> "no!" and "@bob haha! I see" -> "@bob I see"
    are whole.

    >>> tokens, sentences = canonical_tokens("I really love it. Oh, well.")
    >>> _droppable_span(tokens, sentences, 4, 5), _droppable_span(tokens, sentences, 1, 2)  # "oh", "really"
    (False, True)
    """
    span = tokens[i:j]
    if i > 0 and (tokens[i - 1], span[0]) in PHRASES:  # "right now." -> "right": half a phrase is left
        return False
    if any(t[0] in "@#" for t in span) and _inside_sentence([t[0] not in "@#" for t in tokens], sentences, i, j):
        return False  # "I love #Lakers so much" -> "I love so much": a tag inside a sentence is one of its words
    rest = [t for k, t in enumerate(tokens) if sentences[k] == sentences[i] and not i <= k < j and t[0] not in "@#"]
    if (
        len(rest) == 1
        and rest[0] not in STANDALONE
        and sentences[j - 1] == sentences[i]
        and any(t[0] not in "@#" for t in span)
    ):
        return False
    if all(is_filler(t) for t in span):
        return True
    whole_start = i == 0 or sentences[i - 1] != sentences[i]
    whole_end = j == len(tokens) or sentences[j] != sentences[j - 1]
    if whole_start and whole_end:  # whole sentences taken out
        return True
    if whole_start and all(t in _OPENING_SUBJECT or t in DROPPABLE for t in span) and j - i <= 3:
        return j < len(tokens) and sentences[j] == sentences[i]  # the sentence goes on without its subject
    return False


_PAIRED = frozenset('"()[]{}\u201c\u201d')


def droppable_words(words: Sequence[str]) -> list[bool]:
    """For each whitespace word of a text, whether it may be deleted: every canonical word in it is a filler
    (:func:`is_filler`); a word of punctuation only, or one with a quote or bracket, is kept.

    >>> droppable_words("@bob I really love it!".split())
    [True, False, True, False, False]
    >>> droppable_words("Currently watching Lonely Hearts".split())
    [True, False, False, False]
    >>> droppable_words("So I'm gonna wash the dishes instead. Oh, well.".split())[-2:]  # "well." would be left
    [False, False]
    >>> droppable_words("no money right now. I need a job".split())[2:4]  # half of "right now" would be left
    [False, False]
    >>> droppable_words("@amy thanked the #FF guys #fb".split())  # a tag inside a sentence is one of its words
    [True, False, False, False, False, True]
    """
    out = []
    sentence = [0] * len(words)
    for i in range(1, len(words)):
        sentence[i] = sentence[i - 1] + any(c in words[i - 1] for c in ".!?")
    plain = [s for s, w in zip(sentence, words) if not w.startswith(("@", "#"))]  # a sentence's words, tags aside
    canonical = [canonical_tokens(w)[0] for w in words]
    content = [not w.startswith(("@", "#")) and bool(canonical[k]) for k, w in enumerate(words)]
    for i, word in enumerate(words):
        tokens = canonical[i]
        before = canonical[i - 1] if i else []
        paired = bool(tokens and before) and (before[-1], tokens[0]) in PHRASES  # "right now": "now" stays
        starts = i == 0 or sentence[i] != sentence[i - 1]  # "Arnold!<3 Unfortunately, ..." starts one
        short = (  # "Oh, well." -> "well.": no one-word rest that cannot stand alone
            plain.count(sentence[i]) == 2
            and not word.startswith(("@", "#"))
            and not any(
                s == sentence[i] and k != i and not w.startswith(("@", "#")) and _stands_alone(w)
                for k, (s, w) in enumerate(zip(sentence, words))
            )
        )
        # a name is no filler: "DonnaJonesMcfly", or a capital inside a sentence ("the movie Lonely Hearts")
        name = any(c.isupper() for c in word[1:]) or (word[:1].isupper() and not starts)
        # a tag between words of its sentence is one of them: "thanked the #FF guys" keeps "#FF"
        inside = word.startswith(("@", "#")) and _inside_sentence(content, sentence, i, i + 1)
        out.append(
            bool(tokens)
            and all(is_filler(t) for t in tokens)
            and not any(c in word for c in _PAIRED)
            and not (name and not word.startswith(("@", "#")))
            and not short
            and not paired
            and not inside
        )
    return out


def broken_reason(text: str, source: str | None = None) -> str | None:
    """Why ``text`` (a rewrite of ``source``, if given) is broken (one of :data:`REASONS`), or None when it reads
    as a whole sentence. A text equal to its source is never broken by this check."""
    words, _ = canonical_tokens(text)
    if not words:
        return "empty" if not text.strip() else None
    if _META.search(text.strip()) and (source is None or not _META.search(source.strip())):
        return "meta"
    if _clause_end_contractions(text) > _clause_end_contractions(source or ""):
        return "contracted"
    if source is None:
        return "dangling" if words[-1] in _DANGLING else None
    src, sentences = canonical_tokens(source)
    if words == src:
        return None
    if words[-1] in _DANGLING and (not src or src[-1] != words[-1]):
        return "dangling"
    matcher = difflib.SequenceMatcher(None, src, words, autojunk=False)
    matched = sum(b.size for b in matcher.get_matching_blocks())
    if matched < 0.8 * len(words):  # a paraphrase, not an edit of the input: its ending decides
        return None
    for op, i1, i2, _, _ in matcher.get_opcodes():
        if op == "delete" and not _droppable_span(src, sentences, i1, i2):
            return "deleted"
    return None


def is_broken(text: str, source: str | None = None) -> bool:
    """Whether :func:`broken_reason` names a reason."""
    return broken_reason(text, source) is not None


def broken_share(answers: Sequence[str], sources: Sequence[str]) -> float:
    """The share of ``answers`` that are broken rewrites of their ``sources`` (0 for none).

    >>> broken_share(["I am home", "I home"], ["I am home", "I am home"])
    0.5
    """
    if not answers:
        return 0.0
    return sum(is_broken(a, s) for a, s in zip(answers, sources)) / len(answers)
