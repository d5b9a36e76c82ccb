"""AWS adapters: EC2 look-ups, IAM inline policies, one throttling-aware retry wrapper."""
