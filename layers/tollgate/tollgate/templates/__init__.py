"""Prompt templates (S8): typed variables, versions, public and org-private, rendered safely."""
