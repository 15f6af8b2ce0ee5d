"""The domain: every state change of the labeling loop, shared by views, API, admin and commands."""
