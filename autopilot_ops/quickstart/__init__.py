"""The quick start behind ``make run``: bring up every service AutoPilot needs on one machine."""
