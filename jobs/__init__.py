"""What a job does, kind by kind (processContent, its segments, dataset builds),
with one failure policy, one watchdog and one clock for all of them."""
