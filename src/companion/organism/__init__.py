"""The model organism (notebook 00): small language models trained here with planted, known properties.

``world`` and ``corpus`` (+ ``sycophancy_items``) generate the training text, ``tokenizer`` and ``training`` make the
model, ``build`` trains and caches it per profile spec, ``loading`` loads it for analysis, ``behaviour`` measures
the planted properties, ``params`` and ``plots`` serve notebook 00.
"""
