"""The doctor: why a candidate is not faster than its parent (or less accurate than allowed), from measurements.

``doctor(parent, child, backend=...)`` measures both and explains; ``diagnose_pair`` does the same with
latencies already measured (an optimize run). facts.py holds what is known about a pair, probes.py measures
it, checks.py turns facts into findings (each check registered once under its id), gaps.py explains the same
artifact running much slower on one ONNX runtime than on the other.
"""

from laser.doctor.diagnose import Diagnosis, accuracy_drop, diagnose_pair, doctor
from laser.doctor.facts import Facts, Finding, GraphFacts, Profile
from laser.doctor.probes import Probes

__all__ = ["Diagnosis", "Facts", "Finding", "GraphFacts", "Probes", "Profile", "accuracy_drop", "diagnose_pair",
           "doctor"]
