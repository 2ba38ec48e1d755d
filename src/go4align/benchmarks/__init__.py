"""The benchmarks of the paper: data, models, tasks and protocol per benchmark."""
