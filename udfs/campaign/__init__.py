"""The campaign layer (DESIGN.md "Campaign layer"): who a rule runs for and in which arm
(assign.py), what happens to each detection (fate.py), and whether it converted (outcomes)."""
