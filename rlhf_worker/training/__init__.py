"""The ML of the loop, plain Python on torch/transformers/trl: no Django, no Celery.

Each module has a config dataclass and one main function that takes data and returns metrics,
so it runs the same from a Celery task, a benchmark, a test or a notebook.
"""
