"""The pieces of the learning-to-rank recommender (:mod:`stylesense.recommenders.ranker`), as in
the winning H&M Personalized Fashion Recommendations solutions: cheap candidate generators, then
a gradient-boosted ranker over features of each (shopper, candidate) pair.

- :mod:`.content`: what the catalogue says about each item (image vectors, product group,
  attribute columns, price); needs no training, so a product imported a second ago has it.
- :mod:`.snapshot`: what the event log says at one moment (item sales, the candidate models
  fitted on the events before it), for a training window or for serving.
- :mod:`.candidates`: the candidate sources, each a function of a snapshot and one shopper.
- :mod:`.features`: the feature row of each (shopper, candidate) pair.
- :mod:`.model`: LightGBM LambdaRank training with early stopping (the training loop apart).
"""
