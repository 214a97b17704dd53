"""Configs of published checkpoints: one file each, built by common.py."""
