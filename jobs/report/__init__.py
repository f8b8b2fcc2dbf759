"""`moments report`: did a trigger work? Outcome records (DESIGN.md "Outcomes") summarised per
rule and arm: conversion rates with intervals, each treated arm's lift over control, time to goal
and a guardrail verdict; as a text table, a self-contained HTML page with charts, or JSON.

`stats.summarise` is the pure core (outcomes in, summaries out); `inputs` reads a file or a topic,
`table` and `page` render, `cli` wires them to the command line.
"""
