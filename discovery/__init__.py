"""Automated feature discovery: candidates generated from the schema of the clean tables and
their declared relationships (`schema`, `generate`), computed by the batch engine on Ray for
labelled examples (`compute`), judged on the time-based training split (`select`) and
reported (`report`). What survives is an ordinary set of feature views, registered in the
store with generated descriptions."""
