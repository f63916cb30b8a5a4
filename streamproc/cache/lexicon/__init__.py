"""The guard's hand-written English: closed-class words and synonym groups.

``relations`` holds grammatical words the parser's output is read with (spatial prepositions,
particles, number words); ``synonyms`` the groups of words that show the same picture.
Everything else — inflection, voice, roles, which words are content words — comes from the
parser (:mod:`streamproc.cache.scene`).
"""
