"""The evaluation conditions' names, clean first then the attacks in report order.

The registry itself (``ucat.attacks.ATTACKS`` re-exports it); kept apart from the attack code so
that the command line lists the names without importing torch (``ucat --help`` answers at once).
"""

ATTACKS = ("clean", "pgd", "cw", "autoattack", "caa", "a3")
