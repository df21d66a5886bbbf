"""Policies: the language, tier planning and the enforcer, denials."""
