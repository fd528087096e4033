"""The benchmark: ``python -m bench [--quick] [--out DIR]`` measures the service against baselines in one run."""
