"""stylesense: a fashion recommender built on reverse image search."""

__version__ = "0.1.0"
