"""Shared fixtures for the cowdns suite."""
