"""Instructor tooling: generate student labs, run labs headless, autograde with nbgrader."""
