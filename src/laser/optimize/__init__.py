"""Optimize: from a PyTorch model to the best deployable artifact under a budget.

``laser.optimize(model, budget="accuracy_drop<=1%,p50<=5ms", output="out/")`` builds candidates
(compression recipes × formats × backends), measures each on LASER on the runtime it would ship on,
and returns the winner that meets the budget (or the best effort and what it misses), the Pareto front,
and, for every candidate that is not faster than its parent, the doctor's explanation (``laser.doctor``).

Files: budget.py (constraints), candidates.py (recipes × formats × backends), evaluate.py (measuring one
candidate), engine.py (the loop), analysis.py (front, winner), cache.py (resume), diagnose.py (the doctor
on flagged candidates), report.py and html.py (outputs), api.py (``optimize``).

Like ``laser.measure``, the package itself is callable (``laser.optimize(...)``): importing a submodule
binds the package as the attribute ``laser.optimize``, so the package forwards calls to ``optimize``.
"""


from laser._callable import make_callable
from laser.optimize.api import optimize
from laser.optimize.budget import Budget
from laser.optimize.evaluate import Settings
from laser.optimize.result import OptimizeResult, Outcome

make_callable(__name__, optimize)  # laser.optimize(...) works as package and as function

__all__ = ["Budget", "OptimizeResult", "Outcome", "Settings", "optimize"]
