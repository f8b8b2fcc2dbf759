"""Where the detection job's records come from and go: the events file or topic (with the JVM's
decoding and prefilter), the output topics or files, and the Kafka payload's fields.
"""
