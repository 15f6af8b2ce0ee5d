"""The Celery workers that train the reward model and the policy (the closed loop, issue 4).

labelapp sends tasks here by name; this package never imports labelapp's views or forms.
"""
