"""The trainer: a LoRA adapter per nominated workflow, trained in a child process and gated offline.

``python -m services.trainer``.
"""
