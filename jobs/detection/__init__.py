"""The detection job behind `moments run` (jobs/detect.py): its options (config.py), the Flink
environment it runs in (environment.py) and its dataflow (topology.py).
"""
