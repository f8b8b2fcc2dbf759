"""The contracts of micro-moments (event, rule, action) as pydantic models."""
