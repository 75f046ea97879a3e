"""Text datasets: readers for the standard local formats (AG_NEWS-style CSV classification
sets, the IMDB folder layout, WikiText token files, Multi30k parallel text) and the built-in
``GeneratedText`` (no files)."""

from .files import (AG_NEWS, DBpedia, IMDB, CSVClassification, Multi30k, WikiText2,
                    WikiText103, YelpReviewPolarity)
from .generated import GeneratedText

__all__ = ["AG_NEWS", "DBpedia", "YelpReviewPolarity", "CSVClassification", "IMDB",
           "WikiText2", "WikiText103", "Multi30k", "GeneratedText"]
