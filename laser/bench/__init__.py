"""`laser bench`: workloads, data sets, the measurement protocol, the papers' metrics, reports."""
