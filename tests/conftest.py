"""Shared fixtures: the app server and client for the app tests live in app_fixtures.py."""
from app_fixtures import *  # noqa: F401,F403
