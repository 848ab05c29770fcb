"""Installed as a module by setup.py."""
