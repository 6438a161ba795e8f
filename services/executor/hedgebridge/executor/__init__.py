"""The executor: turns order requests into terminal commands and answers with a definite result."""
