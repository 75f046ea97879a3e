"""``GeneratedText``: sentences from a small probabilistic grammar, for classification (an
AG_NEWS-shaped four-topic set) or language modelling (WikiText-shaped lines). No files."""

from __future__ import annotations

import numpy as np

from ...utils.data import Dataset

# Four topics, in AG_NEWS's label order (1 World, 2 Sports, 3 Business, 4 Sci/Tech). Each has
# its own nouns, verbs and adjectives; the function words, names and a shared pool of neutral
# words are common to all, so a classifier must find the topical words among the rest.
TOPICS = {
    "World": dict(
        nouns=["government", "minister", "election", "treaty", "border", "parliament",
               "president", "embassy", "refugees", "ceasefire", "protest", "capital",
               "diplomats", "summit", "army", "rebels", "referendum", "sanctions"],
        verbs=["signed", "rejected", "condemned", "negotiated", "announced", "visited",
               "withdrew", "accused", "elected", "deployed"],
        adjs=["foreign", "national", "military", "diplomatic", "regional", "opposition",
              "humanitarian", "peaceful"]),
    "Sports": dict(
        nouns=["team", "coach", "match", "season", "goal", "championship", "league",
               "striker", "tournament", "final", "stadium", "players", "victory", "title",
               "record", "medal", "inning", "quarterback"],
        verbs=["won", "scored", "defeated", "beat", "signed", "injured", "tied", "clinched",
               "trained", "lost"],
        adjs=["unbeaten", "home", "olympic", "top", "veteran", "rookie", "defending",
              "star"]),
    "Business": dict(
        nouns=["shares", "profit", "company", "market", "investors", "earnings", "stocks",
               "bank", "merger", "revenue", "prices", "economy", "deal", "quarter", "oil",
               "inflation", "dividend", "retailer"],
        verbs=["rose", "fell", "reported", "acquired", "cut", "raised", "forecast",
               "invested", "sold", "posted"],
        adjs=["quarterly", "financial", "corporate", "annual", "global", "strong", "weak",
              "retail"]),
    "Sci/Tech": dict(
        nouns=["software", "researchers", "scientists", "computer", "internet", "chip",
               "space", "satellite", "study", "network", "data", "browser", "genome",
               "robot", "telescope", "phone", "server", "virus"],
        verbs=["released", "discovered", "developed", "launched", "unveiled", "tested",
               "patched", "measured", "upgraded", "detected"],
        adjs=["new", "digital", "wireless", "open", "scientific", "mobile", "quantum",
              "experimental"]),
}
LABELS = list(TOPICS)
_NAMES = ["Smith", "Garcia", "Chen", "Okafor", "Novak", "Haddad", "Silva", "Kumar", "Larsen",
          "Tanaka", "Moreau", "Ivanova"]
_PLACES = ["London", "Nairobi", "Tokyo", "Lima", "Berlin", "Cairo", "Sydney", "Toronto",
           "Mumbai", "Oslo", "Seoul", "Madrid"]
_NEUTRAL_N = ["officials", "report", "week", "plan", "statement", "group", "people", "year",
              "news", "talks", "decision", "results"]
_NEUTRAL_V = ["said", "expected", "confirmed", "announced", "reported", "planned"]
_NEUTRAL_A = ["major", "early", "late", "big", "final", "first", "second", "latest"]
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _sentence(r, topic, topical):
    """One sentence; each content word is topical with probability ``topical``."""
    t = TOPICS[topic]
    pick = lambda pool: pool[r.integers(len(pool))]
    noun = lambda: pick(t["nouns"]) if r.random() < topical else pick(_NEUTRAL_N)
    verb = lambda: pick(t["verbs"]) if r.random() < topical else pick(_NEUTRAL_V)
    adj = lambda: pick(t["adjs"]) if r.random() < topical else pick(_NEUTRAL_A)
    forms = [
        lambda: f"the {adj()} {noun()} {verb()} the {noun()} on {pick(_DAYS)}",
        lambda: f"{pick(_NAMES)} {verb()} a {adj()} {noun()} in {pick(_PLACES)}",
        lambda: f"{pick(_PLACES)} {noun()} {verb()} {adj()} {noun()} , {pick(_NAMES)} said",
        lambda: f"a {noun()} of the {adj()} {noun()} was {verb()} after the {noun()}",
        lambda: f"the {noun()} {verb()} , and the {adj()} {noun()} {verb()} too",
        lambda: f"{pick(_NAMES)} said the {noun()} {verb()} the {adj()} {noun()} in "
                f"{pick(_PLACES)}",
    ]
    return forms[r.integers(len(forms))]()


class GeneratedText(Dataset):
    """Built-in text data from a small grammar, deterministic under ``seed``.

    ``task="classification"``: items ``(label, text)`` as AG_NEWS gives them, label 1..4 for
    World, Sports, Business, Sci/Tech; a headline and one or two sentences in which about
    half of the content words are topical (the rest neutral), so the task is learnable but
    not trivial. ``task="language_modeling"``: items are lines of text, as WikiText's, with
    " = heading = " lines and blank lines between paragraphs.
    ``split`` "train" or "test" (different seeds); ``size`` overrides the length (train 8000 /
    test 2000 items for classification; 4000 / 1000 lines for language modelling).
    """

    classes = LABELS

    def __init__(self, task="classification", split="train", seed=0, size=None):
        if task not in ("classification", "language_modeling"):
            raise ValueError(f"GeneratedText: task must be 'classification' or "
                             f"'language_modeling', got {task!r}")
        if split not in ("train", "test"):
            raise ValueError(f"GeneratedText: split must be 'train' or 'test', got {split!r}")
        self.task, self.split, self.seed = task, split, int(seed)
        default = (8000, 2000) if task == "classification" else (4000, 1000)
        n = default[split == "test"] if size is None else int(size)
        r = np.random.default_rng([self.seed, 0 if split == "train" else 1,
                                   0 if task == "classification" else 1])
        self._items = self._classification(r, n) if task == "classification" else \
            self._lines(r, n)

    @staticmethod
    def _classification(r, n):
        items = []
        for _ in range(n):
            label = int(r.integers(4))
            topic = LABELS[label]
            sents = [_sentence(r, topic, 0.5) for _ in range(1 + int(r.integers(2)))]
            text = " . ".join(sents) + " ."
            items.append((label + 1, text[0].upper() + text[1:]))
        return items

    @staticmethod
    def _lines(r, n):
        lines = []
        while len(lines) < n:
            topic = LABELS[int(r.integers(4))]
            lines.append(f" = {topic} = \n")
            lines.append(" \n")
            for _ in range(1 + int(r.integers(3))):
                sents = [_sentence(r, topic, 0.7) for _ in range(2 + int(r.integers(4)))]
                lines.append(" " + " . ".join(sents) + " . \n")
                lines.append(" \n")
        return lines[:n]

    def __getitem__(self, i):
        return self._items[i]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)
