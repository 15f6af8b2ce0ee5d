"""The Celery workers that train the reward model and the policy, and generate completions.

labelapp sends tasks here by name (rlhf_worker.tasks.run_step); the ML itself is in
rlhf_worker/training/, which knows nothing of Django or Celery.
"""
